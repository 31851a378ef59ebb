"""The search mix over HTTP: real clinical and RPM queries with values sampled from the loaded data.

    python -m bench.search_mix build DIR --patients N --observations M
    python -m bench.search_mix run DIR --label L [--seconds S] [--workers W]
    python -m bench.search_mix report LABEL...

`build` loads N Synthea patients (every bundle through the server's transaction path, validated)
and then M synthetic RPM Observations for those patients, one home device each, through the write
path without validation (as bench.synthetic_rpm does: a million validated writes would take an
hour; the index rows written are the same). `run` starts the server on DIR, samples parameter values
from the store, drives the mix with 16 concurrent clients for S seconds and writes
`bench/results/search-mix-<label>.json`; it also records the SQLite plan of one instance of every
query (tools/explain_search.py) as evidence that the mix runs on indexes. `report` turns several
runs (smallest first) into `bench/results/search-mix.md` with the flatness ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from bench import machine
from bench.client import Connection
from bench.data import bundle_set, read_bundle
from bench.loadgen import Op, closed_loop
from bench.server import Server
from bench.synthetic_rpm import VITALS, reading

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONCURRENCY = 16
LOINC = "http://loinc.org"
HEADERS = {"Accept": "application/fhir+json"}


# -- building a store ----------------------------------------------------------------------------
def _services(data_dir: Path) -> Any:
    from fhir_server.app import build_services
    from fhir_server.settings import Settings

    return build_services(
        Settings(data_dir=data_dir, seed=False, validation_processes=0, auth="off")
    )


def rpm_observation(rnd: random.Random, pid: str) -> dict[str, Any]:
    day = date(2025, 1, 1) + timedelta(days=rnd.randrange(365))
    sec = rnd.randrange(86400)
    when = f"{day.isoformat()}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"
    return reading(rnd, pid, f"rpm-{pid}", when)


async def build(data_dir: Path, patients: int | None, observations: int) -> None:
    from fhir_server.fhir import jsonio
    from fhir_server.interactions.common import prepare_write
    from fhir_server.interactions.context import FhirRequest
    from fhir_server.interactions.router import dispatch

    ctx = _services(data_dir)
    await ctx.storage.open()
    try:
        bundles = bundle_set(patients)
        start = time.perf_counter()
        loaded = 0
        for n, path in enumerate(bundles.prelude + bundles.patients, 1):
            body = jsonio.loads(read_bundle(path))
            resp = await dispatch(ctx, FhirRequest("POST", "", [], {}, body))
            if resp.status != 200:
                raise SystemExit(f"{path.name}: HTTP {resp.status} {resp.body!r:.300}")
            loaded += len(body.get("entry", ()))
            if n % 25 == 0:
                rate = loaded / (time.perf_counter() - start)
                print(f"{n} bundles, {loaded} resources, {rate:.0f}/s", flush=True)
        conn = sqlite3.connect(data_dir / "fhir.db")
        pids = [r[0] for r in conn.execute("SELECT id FROM resources WHERE type = 'Patient'")]
        conn.close()
        rnd = random.Random(7)
        async with ctx.storage.transaction() as tx:
            for pid in pids:
                device = {
                    "resourceType": "Device",
                    "status": "active",
                    "patient": {"reference": f"Patient/{pid}"},
                    "type": {"text": "home vital-signs monitor"},
                }
                w = prepare_write(ctx, device, "Device", f"rpm-{pid}", 1, 0, "PUT", validated=True)
                await tx.write(w)
        done, start = 0, time.perf_counter()
        while done < observations:
            batch = min(5000, observations - done)
            async with ctx.storage.transaction() as tx:
                for i in range(batch):
                    obs = rpm_observation(rnd, rnd.choice(pids))
                    oid = f"rpm{done + i}"
                    w = prepare_write(ctx, obs, "Observation", oid, 1, 0, "PUT", validated=True)
                    await tx.write(w)
            done += batch
            if done % 50_000 == 0 or done == observations:
                rate = done / (time.perf_counter() - start)
                print(f"{done} RPM observations, {rate:.0f}/s", flush=True)
    finally:
        await ctx.storage.close()
    conn = sqlite3.connect(data_dir / "fhir.db")
    conn.execute("ANALYZE")
    conn.close()


# -- sampling values and the mix -----------------------------------------------------------------
def sample_values(db: Path) -> dict[str, list[str]]:
    """Values the queries draw from, read from the store's own index tables."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    pids = [r[0] for r in conn.execute("SELECT id FROM resources WHERE type = 'Patient'")]
    families = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT exact FROM idx_string WHERE type = 'Patient' AND param = 'family' "
            "LIMIT 2000"
        )
    ]
    conditions = [
        f"{s}|{c}"
        for s, c in conn.execute(
            "SELECT system, code FROM idx_token WHERE type = 'Condition' AND param = 'code' "
            "GROUP BY system, code ORDER BY count(*) DESC LIMIT 40"
        )
    ]
    conn.close()
    return {"patients": pids, "families": families, "conditions": conditions}


def _window(rnd: random.Random, days: int) -> str:
    start = date(2025, 1, 1) + timedelta(days=rnd.randrange(365 - days))
    return f"date=ge{start.isoformat()}&date=lt{(start + timedelta(days=days)).isoformat()}"


Template = Callable[[random.Random, dict[str, list[str]]], str]


def _rpm_code(rnd: random.Random) -> str:
    return f"{LOINC}|{rnd.choice(VITALS)[0]}"


MIX: dict[str, Template] = {
    "by-patient": lambda r, v: f"Observation?patient=Patient/{r.choice(v['patients'])}",
    "patient+code": lambda r, v: (
        f"Observation?patient={r.choice(v['patients'])}&code={_rpm_code(r)}"
    ),
    "latest-reading": lambda r, v: (
        f"Observation?patient={r.choice(v['patients'])}&code={_rpm_code(r)}&_sort=-date&_count=1"
    ),
    "patient+date-window": lambda r, v: (
        f"Observation?patient={r.choice(v['patients'])}&{_window(r, 30)}"
    ),
    "device+date-window": lambda r, v: (
        f"Observation?device=Device/rpm-{r.choice(v['patients'])}&{_window(r, 14)}"
    ),
    "condition-by-code": lambda r, v: f"Condition?code={r.choice(v['conditions'])}",
    "encounters-sort-date": lambda r, v: f"Encounter?patient={r.choice(v['patients'])}&_sort=-date",
    "vitals-total-accurate": lambda r, v: (
        f"Observation?patient={r.choice(v['patients'])}&category=vital-signs&_total=accurate"
    ),
    "chained-name+code": lambda r, v: (
        f"Observation?subject:Patient.family={r.choice(v['families'])}&code={_rpm_code(r)}"
    ),
    "include-device": lambda r, v: (
        f"Observation?patient={r.choice(v['patients'])}&code={_rpm_code(r)}"
        "&_include=Observation:device&_count=10"
    ),
    "revinclude-devices": lambda r, v: (
        f"Patient?_id={r.choice(v['patients'])}&_revinclude=Device:patient"
    ),
    "patient-by-family": lambda r, v: f"Patient?family={r.choice(v['families'])}",
}


def _target(query: str) -> str:
    """The request target: sampled values (names with accents, say) percent-encoded."""
    return "/fhir/" + quote(query, safe="?&=/:,$")


def make_op_factory(values: dict[str, list[str]], seed: int = 11) -> Callable[..., Op]:
    rnd = random.Random(seed)
    labels = list(MIX)
    counter = 0

    def make_op(conn: Connection, worker: int) -> Op:
        nonlocal counter
        label = labels[counter % len(labels)]
        counter += 1
        query = MIX[label](rnd, values)
        return label, conn.prepare("GET", _target(query), None, HEADERS), None

    return make_op


async def _check_all(port: int, values: dict[str, list[str]]) -> dict[str, Any]:
    """Every query kind answers 200 with a searchset before timing starts (one instance each)."""
    rnd = random.Random(3)
    conn = Connection(port)
    out: dict[str, Any] = {}
    for label, template in MIX.items():
        query = template(rnd, values)
        resp = await conn.request("GET", _target(query), None, HEADERS)
        if resp.status != 200:
            raise SystemExit(f"{label}: HTTP {resp.status} for {query}: {resp.body[:300]!r}")
        bundle = orjson.loads(resp.body)
        out[label] = {"example": query, "entries": len(bundle.get("entry", ()))}
    conn.close()
    return out


def plans(db: Path, examples: dict[str, Any]) -> dict[str, list[str]]:
    """The statements behind one instance of each query kind and SQLite's plan for each."""
    sys.path.insert(0, str(ROOT / "tools"))
    from explain_search import explain, search_context

    ctx = search_context()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {label: explain(conn, ctx, info["example"]) for label, info in examples.items()}
    finally:
        conn.close()


def warm_page_cache(db: Path) -> float:
    """Read the database file once so the OS page cache holds it (seconds taken): the figures
    are for a server in steady state, not for its first minutes after a reboot."""
    start = time.perf_counter()
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            with path.open("rb") as f:
                while f.read(8 << 20):
                    pass
    return round(time.perf_counter() - start, 1)


async def run(data_dir: Path, label: str, seconds: float, workers: int) -> Path:
    os.environ["FHIR_SERVER_AUTH"] = "off"  # the mix measures search, not token checks
    db = data_dir / "fhir.db"
    warmed_s = warm_page_cache(db)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    counts = dict(conn.execute("SELECT type, count(*) FROM resources GROUP BY type").fetchall())
    conn.close()
    values = sample_values(db)
    with Server(workers=workers, data_dir=data_dir) as server:
        examples = await _check_all(server.port, values)
        # warm-up: the page cache and the planner's statistics, not measured
        await closed_loop(
            server,
            make_op_factory(values, seed=99),
            concurrency=CONCURRENCY,
            max_requests=2000,
            max_seconds=min(10.0, seconds),
        )
        result = await closed_loop(
            server,
            make_op_factory(values),
            concurrency=CONCURRENCY,
            max_requests=10_000_000,
            max_seconds=seconds,
        )
    doc = {
        "label": label,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine.describe(),
        "store": {
            "resources": sum(counts.values()),
            "observations": counts.get("Observation", 0),
            "patients": counts.get("Patient", 0),
            "db_bytes": db.stat().st_size,
        },
        "concurrency": CONCURRENCY,
        "server_workers": workers,
        "seconds": seconds,
        "page_cache_warm_s": warmed_s,
        "summary": result.summary(),
        "examples": examples,
        "plans": plans(db, examples),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"search-mix-{label}.json"
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    s = doc["summary"]
    print(
        f"{label}: {s['requests_per_s']} req/s, p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, "
        f"usage {s['usage']}",
        flush=True,
    )
    return out


# -- report --------------------------------------------------------------------------------------
def report(labels: list[str]) -> Path:
    docs = [orjson.loads((RESULTS / f"search-mix-{label}.json").read_bytes()) for label in labels]
    lines = [
        "# Search mix over HTTP",
        "",
        "Generated by `python -m bench.search_mix report` from the JSON files beside it. "
        f"{CONCURRENCY} concurrent keep-alive clients in one process on the same 2-core machine "
        "as the server; parameter values sampled from the loaded data; the 12 query kinds in "
        "turn. Target: p50 ≤ 20 ms and ≥ 500 requests/s at the largest size, p50 within 2x "
        "from the smallest to the largest size.",
        "",
        "| size | resources | Observations | server workers | req/s | p50 ms | p95 ms | "
        "server cores | client cores | other cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in docs:
        s, st, u = d["summary"], d["store"], d["summary"]["usage"]
        lines.append(
            f"| {d['label']} | {st['resources']:,} | {st['observations']:,} | "
            f"{d['server_workers']} | {s['requests_per_s']} | {s['p50_ms']} | {s['p95_ms']} | "
            f"{u['server_cores_busy']} | {u['client_cores_busy']} | {u['other_cores_busy']} |"
        )
    first, last = docs[0]["summary"]["p50_ms"], docs[-1]["summary"]["p50_ms"]
    if first and last:
        lines += ["", f"p50 largest / smallest: {last / first:.2f}x"]
    biggest = docs[-1]
    lines += [
        "",
        f"## Per query kind at {biggest['label']}",
        "",
        "| query kind | ok | p50 ms | p95 ms | example |",
        "|---|---|---|---|---|",
    ]
    for label, info in biggest["summary"].get("by_operation", {}).items():
        example = biggest["examples"][label]["example"].replace("|", "\\|")
        lines.append(
            f"| {label} | {info['ok']} | {info['p50_ms']} | {info['p95_ms']} | `{example}` |"
        )
    lines += ["", f"## Query plans at {biggest['label']} (EXPLAIN QUERY PLAN)", ""]
    for label, plan_lines in biggest["plans"].items():
        lines += [f"**{label}**", "", *plan_lines[2:]]
    out = RESULTS / "search-mix.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search_mix", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("data_dir", type=Path)
    b.add_argument("--patients", type=int, default=None, help="Synthea patients (default all)")
    b.add_argument("--observations", type=int, default=1_000_000)
    r = sub.add_parser("run")
    r.add_argument("data_dir", type=Path)
    r.add_argument("--label", required=True)
    r.add_argument("--seconds", type=float, default=30.0)
    r.add_argument("--workers", type=int, default=1)
    rep = sub.add_parser("report")
    rep.add_argument("labels", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "build":
        asyncio.run(build(args.data_dir, args.patients, args.observations))
    elif args.cmd == "run":
        asyncio.run(run(args.data_dir, args.label, args.seconds, args.workers))
    else:
        print(report(args.labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
