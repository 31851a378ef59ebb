"""Reads by id against the ceiling: `GET /fhir/[type]/[id]` vs a bare endpoint in the same app.

The bare endpoint (`/_bench/ceiling/...`, added by bench.launcher) serves the same bytes and
headers from a dict filled at warm-up. Both routes get the same generator, the same ids (a random
sample of everything loaded, walked in turn), the same concurrency and duration, in alternating
rounds; the headline is the ratio of the median requests/s.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import orjson

from bench import wrk
from bench.client import Connection
from bench.loadgen import Op, closed_loop
from bench.resources import TYPES, created_ref, make
from bench.server import Server

CEILING = "/_bench/ceiling"
HEADERS = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}


async def synthetic_ids(server: Server, count: int) -> list[str]:
    """Create `count` small resources (used when no Synthea data was ingested)."""
    rng = random.Random(5)
    conn = Connection(server.port)
    refs: list[str] = []
    patient = "Patient/unknown"
    for n in range(count):
        rtype = TYPES[n % len(TYPES)]
        resp = await conn.request("POST", f"/fhir/{rtype}", make(rtype, rng, patient), HEADERS)
        ref = created_ref(resp)
        if resp.status != 201 or ref is None:
            raise RuntimeError(f"read setup: {rtype} create gave HTTP {resp.status}")
        if rtype == "Patient":
            patient = ref
        refs.append(ref)
    conn.close()
    return refs


async def warm_ceiling(server: Server, refs: list[str]) -> dict[str, Any]:
    """Fill the ceiling cache in every worker; check both routes give the same bytes."""
    pids: set[int] = set()
    body = orjson.dumps(refs)
    for _ in range(20 * server.workers):  # each worker that answers fills its own cache
        conn = Connection(server.port)
        resp = await conn.request("POST", "/_bench/warm", body, HEADERS)
        conn.close()
        info = orjson.loads(resp.body)
        if info["found"] != len(refs):
            raise RuntimeError(f"warm-up found {info['found']} of {len(refs)} resources")
        pids.add(info["pid"])
        if len(pids) >= server.workers:
            break
    conn = Connection(server.port)
    mismatched = []
    for ref in refs:
        a = await conn.request("GET", f"/fhir/{ref}")
        b = await conn.request("GET", f"{CEILING}/{ref}")
        same = (a.status, a.body, a.header("etag"), a.header("content-type")) == (
            b.status,
            b.body,
            b.header("etag"),
            b.header("content-type"),
        )
        if not same:
            mismatched.append(ref)
    conn.close()
    if mismatched:
        raise RuntimeError(f"ceiling and /fhir differ for {len(mismatched)} ids: {mismatched[:3]}")
    return {"workers_warmed": len(pids), "ids_checked_same_bytes": len(refs)}


async def python_get_load(
    server: Server, paths: list[str], *, concurrency: int, seconds: float
) -> dict[str, Any]:
    next_index = 0

    def make_op(c: Connection, i: int) -> Op:
        nonlocal next_index
        path = paths[next_index]
        next_index = (next_index + 1) % len(paths)
        return "read", c.prepare("GET", path), None

    loop = await closed_loop(
        server, make_op, concurrency=concurrency, max_requests=10**9, max_seconds=seconds
    )
    return loop.summary()


async def run(
    server: Server,
    ids: list[str],
    *,
    sample: int,
    concurrency: int = 16,
    seconds: float,
    rounds: int,
    generator: str,
) -> dict[str, Any]:
    refs = random.Random(3).sample(ids, min(sample, len(ids)))
    by_type: dict[str, int] = {}
    for r in refs:
        by_type[r.split("/")[0]] = by_type.get(r.split("/")[0], 0) + 1
    warm = await warm_ceiling(server, refs)

    async def load(prefix: str, secs: float) -> dict[str, Any]:
        paths = [f"{prefix}/{r}" for r in refs]
        if generator == "wrk":
            return wrk.get_load(server, paths, connections=concurrency, seconds=secs)
        return await python_get_load(server, paths, concurrency=concurrency, seconds=secs)

    # Unmeasured warm-up of both routes (SQLite page cache, code paths), then alternating rounds.
    await load("/fhir", min(2.0, seconds))
    await load(CEILING, min(2.0, seconds))
    runs: dict[str, list[dict[str, Any]]] = {"fhir": [], "ceiling": []}
    for n in range(rounds):
        order = ["ceiling", "fhir"] if n % 2 == 0 else ["fhir", "ceiling"]
        for name in order:
            runs[name].append(await load("/fhir" if name == "fhir" else CEILING, seconds))

    def med(name: str, key: str) -> float:
        return round(float(statistics.median(r[key] or 0.0 for r in runs[name])), 3)

    fhir_rps, ceiling_rps = med("fhir", "requests_per_s"), med("ceiling", "requests_per_s")
    fhir_cpu = med("fhir", "requests_per_server_cpu_s")
    ceiling_cpu = med("ceiling", "requests_per_server_cpu_s")
    per_round = [
        round(f["requests_per_s"] / c["requests_per_s"], 3) if c["requests_per_s"] else None
        for f, c in zip(runs["fhir"], runs["ceiling"], strict=True)
    ]
    return {
        "generator": generator,
        "concurrency": concurrency,
        "ids_sampled": len(refs),
        "ids_available": len(ids),
        "ids_by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "seconds_per_run": seconds,
        "rounds": rounds,
        **warm,
        "fhir_requests_per_s": fhir_rps,
        "ceiling_requests_per_s": ceiling_rps,
        "ratio": round(fhir_rps / ceiling_rps, 3) if ceiling_rps else None,
        "ratio_per_round": per_round,
        # the same ratio per server CPU-second: less sensitive to other processes on the machine
        "fhir_requests_per_server_cpu_s": fhir_cpu,
        "ceiling_requests_per_server_cpu_s": ceiling_cpu,
        "cpu_ratio": round(fhir_cpu / ceiling_cpu, 3) if ceiling_cpu else None,
        "fhir_p50_ms": med("fhir", "p50_ms"),
        "fhir_p99_ms": med("fhir", "p99_ms"),
        "ceiling_p50_ms": med("ceiling", "p50_ms"),
        "ceiling_p99_ms": med("ceiling", "p99_ms"),
        "errors": sum(r["errors"]["count"] for rs in runs.values() for r in rs),
        "runs": runs,
    }
