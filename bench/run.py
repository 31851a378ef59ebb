"""`python -m bench.run --size smoke|small|full [--workload ingest,rpm,crud,read] [--out DIR]`

Starts a fresh server (bench.launcher) on a free 127.0.0.1 port with a temp data dir, runs the
workloads in order (ingest, rpm, crud, read) against it, stops it, and writes
`<out>/<timestamp>-<size>.json`, `<out>/<timestamp>-<size>.md` and `<out>/latest-<size>.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import machine, report, wrk
from bench.data import DataMissing, bundle_set
from bench.server import Server, wait_for_quiet
from bench.workloads import crud, ingest, read, rpm

WORKLOADS = ("ingest", "rpm", "crud", "read")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
MAX_REQUESTS = 2_000_000  # every closed loop also stops by count


@dataclass(frozen=True)
class Size:
    patients: int | None  # None: all 617
    ingest_loaders: int
    ingest_max_s: float
    rpm_s: float
    rpm_max_requests: int
    crud_s: float
    crud_pool: int
    crud_max_requests: int
    read_sample: int
    read_s: float
    read_rounds: int
    synthetic_ids: int  # resources created for the read workload when nothing was ingested


SIZES = {
    "smoke": Size(3, 4, 120, 2, 400, 2, 20, 600, 100, 1, 1, 100),
    "small": Size(30, 4, 600, 10, MAX_REQUESTS, 15, 200, MAX_REQUESTS, 2000, 5, 3, 1000),
    "full": Size(None, 4, 900, 30, MAX_REQUESTS, 30, 500, MAX_REQUESTS, 5000, 10, 3, 5000),
}
CONCURRENCY = 16


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--size", choices=list(SIZES), default="smoke")
    p.add_argument("--workload", default=",".join(WORKLOADS), help="comma-separated subset")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="GET load generator for the read workload (auto: wrk if installed)",
    )
    p.add_argument("--patients", type=int, help="override the size's patient bundle count")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for other processes to leave the CPU idle",
    )
    return p


def _choose_generator(wanted: str) -> str:
    if wanted == "auto":
        return "wrk" if wrk.available() else "python"
    if wanted == "wrk" and not wrk.available():
        raise SystemExit("--generator wrk: wrk is not installed (apt-get install wrk)")
    return wanted


async def run_workloads(
    args: argparse.Namespace,
    size: Size,
    names: list[str],
    generator: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    ids: list[str] = []
    with Server(workers=args.workers) as server:
        results["server"] = {
            "command": " ".join(["python", *server.command[1:3], "..."]),
            "workers": server.workers,
            "startup_s": round(server.startup_seconds, 2),
            "access_log": False,
            "settings": server_settings(),
        }
        for name in names:
            log(f"{name}: running")
            t0 = time.perf_counter()
            try:
                if name == "ingest":
                    patients = args.patients if args.patients is not None else size.patients
                    bundles = bundle_set(patients)
                    out, ids = await ingest.run(
                        server, bundles, loaders=size.ingest_loaders, max_seconds=size.ingest_max_s
                    )
                    out["data_compressed_bytes"] = bundles.compressed_bytes
                elif name == "rpm":
                    out = await rpm.run(
                        server,
                        concurrency=CONCURRENCY,
                        max_requests=size.rpm_max_requests,
                        max_seconds=size.rpm_s,
                    )
                elif name == "crud":
                    out = await crud.run(
                        server,
                        concurrency=CONCURRENCY,
                        pool_per_type=size.crud_pool,
                        max_requests=size.crud_max_requests,
                        max_seconds=size.crud_s,
                    )
                else:
                    source = "ingested Synthea resources"
                    if not ids:
                        ids = await read.synthetic_ids(server, size.synthetic_ids)
                        source = "synthetic resources (nothing was ingested in this run)"
                    out = await read.run(
                        server,
                        ids,
                        sample=size.read_sample,
                        concurrency=CONCURRENCY,
                        seconds=size.read_s,
                        rounds=size.read_rounds,
                        generator=generator,
                    )
                    out["id_source"] = source
            except DataMissing as exc:
                out = {"skipped": str(exc)}
            except Exception as exc:
                out = {"failed": f"{type(exc).__name__}: {exc}", "server_log": server.log_tail()}
            out["elapsed_s"] = round(time.perf_counter() - t0, 2)
            out["server_processes_at_end"] = server.process_count()
            results[name] = out
            log(f"{name}: {report.headline(name, out)}")
        results["server"]["data_dir_bytes_at_end"] = server.data_bytes()
    return results


def server_settings() -> dict[str, Any]:
    """The settings the server process starts with (the same FHIR_SERVER_* environment)."""
    from fhir_server.settings import Settings

    values = Settings().model_dump(mode="json")
    keep = ("validation_processes", "sqlite_synchronous", "storage", "max_request_bytes")
    return {k: values[k] for k in keep if k in values}


def event_loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.workload.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    names = [n for n in WORKLOADS if n in names]  # always in the documented order
    size = SIZES[args.size]
    generator = _choose_generator(args.generator)
    factory, loop_name = event_loop_factory()

    def log(msg: str) -> None:
        print(f"[bench {args.size}] {msg}", flush=True)

    log(f"workloads {names}, server workers {args.workers}, read generator {generator}")
    busy_before = None
    if args.quiet_wait > 0:
        log(f"waiting up to {args.quiet_wait:g} s for an idle machine")
        busy_before = wait_for_quiet(args.quiet_wait)
        log(f"machine busy: {busy_before} cores")
    started = datetime.now(UTC)
    host = machine.describe() | {"cores_busy_before_start": busy_before}
    with asyncio.Runner(loop_factory=factory) as runner:
        results = runner.run(run_workloads(args, size, names, generator, log))
    doc: dict[str, Any] = {
        "size": args.size,
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": machine.command(argv),
        "machine": host | {"loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "size_parameters": asdict(size) | {"concurrency": CONCURRENCY},
        "load_generator": {
            "process": "one harness process (asyncio, raw HTTP/1.1 keep-alive client)",
            "event_loop": loop_name,
            "read_workload": generator,
            "wrk": wrk.version() if generator == "wrk" else None,
            "client_tasks": {
                "ingest": size.ingest_loaders,
                "rpm": CONCURRENCY,
                "crud": CONCURRENCY,
                "read": CONCURRENCY,
            },
            "server_workers": args.workers,
        },
        "targets": report.TARGETS,
        "workloads": results,
    }
    paths = write_results(doc, args.out)
    log(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def write_results(doc: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = doc["started_utc"].replace("-", "").replace(":", "")
    base = out / f"{stamp}-{doc['size']}"
    json_path = base.with_suffix(".json")
    md_path = base.with_suffix(".md")
    json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    md = report.markdown(doc, json_path.name)
    md_path.write_text(md)
    latest = out / f"latest-{doc['size']}.md"
    latest.write_text(md)
    return [json_path, md_path, latest]


if __name__ == "__main__":
    sys.exit(main())
