"""Which load generator is fast enough? `python -m bench.generators [--seconds S] [--out DIR]`

Drives the same GETs of the ceiling endpoint (the cheapest route the server has) with httpx, with
the harness's raw asyncio client and with wrk, side by side against one fresh server, and reports
requests/s and how much CPU the generator itself burned. On a 2-core machine a generator that
needs most of a core to keep up caps what it can measure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import machine, wrk
from bench.client import LOCALHOST
from bench.loadgen import measured
from bench.run import DEFAULT_OUT, event_loop_factory
from bench.server import Server
from bench.workloads import read

CONCURRENCY = 16


async def _httpx_load(server: Server, paths: list[str], seconds: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    base = f"http://{LOCALHOST}:{server.port}"
    ok = 0
    nxt = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:

        async def worker() -> None:
            nonlocal ok, nxt
            while time.perf_counter() < deadline:
                path = paths[nxt]
                nxt = (nxt + 1) % len(paths)
                r = await client.get(path)
                ok += r.status_code == 200

        with measured(server) as usage:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return {
        "requests_ok": ok,
        "requests_per_s": round(ok / usage.wall_s, 1),
        "usage": usage.as_dict(),
    }


async def compare(seconds: float, rounds: int) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"httpx": [], "raw-asyncio": [], "wrk": []}
    with Server() as server:
        refs = await read.synthetic_ids(server, 400)
        paths = [f"{read.CEILING}/{r}" for r in refs]
        await read.warm_ceiling(server, refs)
        for _ in range(rounds):
            out["httpx"].append(await _httpx_load(server, paths, seconds))
            out["raw-asyncio"].append(
                await read.python_get_load(server, paths, concurrency=CONCURRENCY, seconds=seconds)
            )
            if wrk.available():
                out["wrk"].append(
                    wrk.get_load(server, paths, connections=CONCURRENCY, seconds=seconds)
                )
    summary: dict[str, Any] = {}
    for name, runs in out.items():
        if not runs:
            summary[name] = {"skipped": "not installed"}
            continue
        best = max(runs, key=lambda r: r["requests_per_s"])
        u = best["usage"]
        summary[name] = {
            "requests_per_s": best["requests_per_s"],
            "generator_cores_busy": u["client_cores_busy"],
            "server_cores_busy": u["server_cores_busy"],
            "other_cores_busy": u["other_cores_busy"],
            "generator_cpu_us_per_request": round(
                u["client_cpu_s"] / max(1, best["requests_ok"]) * 1e6, 1
            ),
            "all_rounds_requests_per_s": [r["requests_per_s"] for r in runs],
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.generators", description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    factory, loop_name = event_loop_factory()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with asyncio.Runner(loop_factory=factory) as runner:
        summary = runner.run(compare(args.seconds, args.rounds))
    host = machine.describe()
    doc: dict[str, Any] = {
        "started_utc": started,
        "command": "python -m bench.generators " + " ".join(argv or sys.argv[1:]),
        "machine": host,
        "event_loop": loop_name,
        "concurrency": CONCURRENCY,
        "target": "GET /_bench/ceiling/{type}/{id} (bytes from a dict), 1 uvicorn worker",
        "generators": summary,
    }
    lines = [
        f"# Load generators side by side, {started}",
        "",
        f"{CONCURRENCY} keep-alive connections, ceiling endpoint, 1 server worker, best of "
        f"{args.rounds} x {args.seconds:g} s. Machine: {host['nproc']} CPUs, "
        f"load average at start {host['loadavg_at_start']}.",
        "",
        "| generator | requests/s | generator cores busy | CPU per request (us) | server cores busy "
        "| other processes |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} | | | | |")
            continue
        lines.append(
            f"| {name} | {s['requests_per_s']:,.0f} | {s['generator_cores_busy']} | "
            f"{s['generator_cpu_us_per_request']} | {s['server_cores_busy']} | "
            f"{s['other_cores_busy']} |"
        )
    md = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.replace("-", "").replace(":", "")
    (args.out / f"{stamp}-generators.json").write_bytes(
        orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    )
    (args.out / f"{stamp}-generators.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
