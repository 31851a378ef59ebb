"""Bulk Data export benchmark: resources/s and peak memory, through the server and the CLI.

    python -m bench.export --size smoke|small|full [--store DIR] [--out bench/results]

Builds a synthetic RPM store (bench/synthetic_rpm.py: patients, a device each, vital-sign
Observations; smoke 2,000 / small 20,000 / full 200,000 Observations) in a temporary folder, or
uses `--store DIR` (an existing data directory, left as it was apart from its exports/ folder), then
measures two paths on it:

- **server**: a fresh server process (bench.launcher, authorization off) gets `GET /fhir/$export`
  with `Prefer: respond-async`; the harness polls the status URL every 0.2 s until the manifest,
  then downloads every file (streamed). Figures: export resources/s (kick-off to manifest), the
  download's MB/s, and the server's resident memory (VmRSS of its process tree, sampled every
  0.1 s): before the kick-off, the peak during the export, and the growth.
- **cli**: `fhir-server export --out DIR` (fhir_server/export/local.py) in a child process: the
  same plan and writer without HTTP; resources/s, its RSS once the store is open, and its peak
  (`ru_maxrss`).

Memory bound (fhir_server/export/execute.py): one page of `export_page_size` (500) resources at a
time, each at most `max_request_bytes`; the peak should not grow with the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import machine
from bench.server import ROOT, Server, _tree


@dataclass(frozen=True)
class Size:
    observations: int
    patients: int


SIZES = {
    "smoke": Size(2_000, 20),
    "small": Size(20_000, 200),
    "full": Size(200_000, 1_000),
}


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory figure in KiB: VmRSS (all resident memory, including the
    SQLite database pages the engine maps with mmap) or RssAnon (the heap: Python objects,
    SQLite's page cache)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mib(root: int, field: str = "VmRSS") -> float:
    return sum(_rss_kib(pid, field) for pid in _tree(root)) / 1024


class RssSampler:
    """Peak VmRSS and RssAnon of a process tree, sampled on a thread every `every_s` seconds."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak = 0.0
        self.peak_anon = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mib(self.pid))
            self.peak_anon = max(self.peak_anon, tree_rss_mib(self.pid, "RssAnon"))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _server_export(server: Server) -> dict[str, Any]:
    assert server.proc is not None
    base = f"http://127.0.0.1:{server.port}/fhir"
    out = Path(tempfile.mkdtemp(prefix="fhir-bench-export-"))
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            before = tree_rss_mib(server.proc.pid)
            before_anon = tree_rss_mib(server.proc.pid, "RssAnon")
            with RssSampler(server.proc.pid) as sampler:
                t0 = time.perf_counter()
                r = await client.get(f"{base}/$export", headers={"Prefer": "respond-async"})
                r.raise_for_status()
                status_url = r.headers["Content-Location"]
                polls = 0
                while True:
                    r = await client.get(status_url)
                    polls += 1
                    if r.status_code != 202:
                        break
                    await asyncio.sleep(0.2)
                export_s = time.perf_counter() - t0
            r.raise_for_status()
            manifest = r.json()
            t1 = time.perf_counter()
            size = 0
            for item in manifest["output"]:
                async with client.stream("GET", item["url"]) as resp:
                    resp.raise_for_status()
                    with (out / item["url"].rsplit("/", 1)[-1]).open("wb") as f:
                        async for chunk in resp.aiter_bytes():
                            size += len(chunk)
                            f.write(chunk)
            download_s = time.perf_counter() - t1
            await client.delete(status_url)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    exported = sum(o["count"] for o in manifest["output"])
    return {
        "resources": exported,
        "files": len(manifest["output"]),
        "export_s": round(export_s, 2),
        "resources_per_s": round(exported / export_s, 1),
        "status_polls": polls,
        "download_mb": round(size / 1e6, 1),
        "download_mb_per_s": round(size / 1e6 / download_s, 1) if download_s else None,
        "server_rss_mib_before": round(before, 1),
        "server_rss_mib_peak": round(sampler.peak, 1),
        "server_rss_mib_growth": round(sampler.peak - before, 1),
        "server_anon_mib_before": round(before_anon, 1),
        "server_anon_mib_peak": round(sampler.peak_anon, 1),
        "server_anon_mib_growth": round(sampler.peak_anon - before_anon, 1),
    }


def _child_cli(store: Path, out: Path) -> None:
    """In the child process: export the store with the CLI path and print figures as JSON."""
    from fhir_server.app import build_services
    from fhir_server.export.local import export_to_folder
    from fhir_server.settings import Settings

    async def run() -> dict[str, Any]:
        services = build_services(Settings(data_dir=store, seed=False, validation_processes=0))
        await services.storage.open()
        try:
            rss_open = _rss_kib(os.getpid()) / 1024
            anon_open = _rss_kib(os.getpid(), "RssAnon") / 1024
            with RssSampler(os.getpid(), 0.02) as sampler:
                t0 = time.perf_counter()
                doc = await export_to_folder(services, out, [], progress=False)
                elapsed = time.perf_counter() - t0
        finally:
            await services.storage.close()
        n = sum(o["count"] for o in doc["output"])
        return {
            "resources": n,
            "export_s": round(elapsed, 2),
            "resources_per_s": round(n / elapsed, 1),
            "rss_mib_store_open": round(rss_open, 1),
            "rss_mib_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "anon_mib_store_open": round(anon_open, 1),
            "anon_mib_peak": round(sampler.peak_anon, 1),
            "anon_mib_growth": round(sampler.peak_anon - anon_open, 1),
        }

    print(json.dumps(asyncio.run(run())))


def _cli_export(store: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="fhir-bench-cli-"))
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-m", "bench.export", "--child-cli", str(store), str(out / "x")],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=3600,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _markdown(doc: dict[str, Any]) -> str:
    s, c = doc["server"], doc["cli"]
    return "\n".join(
        [
            f"# Export benchmark, {doc['size']} ({doc['started_utc']})",
            "",
            f"Store: {doc['store']['resources']:,} resources "
            f"({doc['store']['db_mib']} MiB database); commit {doc['machine']['git_commit']}; "
            f"load average at start {doc['machine']['loadavg_at_start']}.",
            "",
            "| path | resources | export s | resources/s | heap (RssAnon) MiB | all RSS MiB |",
            "|---|---|---|---|---|---|",
            f"| server (`$export`, poll, manifest) | {s['resources']:,} | {s['export_s']} | "
            f"{s['resources_per_s']:,} | {s['server_anon_mib_before']} before, peak "
            f"{s['server_anon_mib_peak']} (+{s['server_anon_mib_growth']}) | "
            f"{s['server_rss_mib_before']} before, peak {s['server_rss_mib_peak']} |",
            f"| CLI (`fhir-server export`) | {c['resources']:,} | {c['export_s']} | "
            f"{c['resources_per_s']:,} | {c['anon_mib_store_open']} with the store open, peak "
            f"{c['anon_mib_peak']} (+{c['anon_mib_growth']}) | "
            f"{c['rss_mib_store_open']} open, peak {c['rss_mib_peak']} |",
            "",
            "All RSS includes the database pages SQLite maps (`mmap_size` 256 MiB), which the "
            "kernel can drop at any time; the heap is what the export itself holds.",
            "",
            f"Download of the server's files: {s['download_mb']} MB at "
            f"{s['download_mb_per_s']} MB/s. Raw figures: `{doc['json']}`.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bulk Data export benchmark")
    parser.add_argument("--size", choices=list(SIZES), default="smoke")
    parser.add_argument("--store", type=Path, help="an existing data directory to export")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--child-cli", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_cli:
        _child_cli(*args.child_cli)
        return 0
    size = SIZES[args.size]
    started = datetime.now(UTC)
    # The server's runner looks for new jobs every 0.2 s (default 1 s), so a short export is not
    # mostly waiting; the settle time (0.5 s) stays in the figures.
    os.environ.setdefault("FHIR_SERVER_EXPORT_POLL_SECONDS", "0.2")
    temp = None if args.store else Path(tempfile.mkdtemp(prefix="fhir-bench-store-"))
    store: Path = args.store or (temp / "data")  # type: ignore[operator]
    try:
        if temp is not None:
            from bench.synthetic_rpm import build

            print(f"[export] building {size.observations:,} observations", flush=True)
            asyncio.run(build(store, size.observations, size.patients))
        from fhir_server.app import build_services
        from fhir_server.settings import Settings

        async def count() -> int:
            services = build_services(Settings(data_dir=store, seed=False))
            await services.storage.open()
            try:
                return await services.storage.count()
            finally:
                await services.storage.close()

        resources = asyncio.run(count())
        db_mib = round(sum(f.stat().st_size for f in store.glob("fhir.db*")) / 2**20, 1)
        print(f"[export] store: {resources:,} resources, {db_mib} MiB; server path", flush=True)
        with Server(data_dir=store) as server:
            server_figures = asyncio.run(_server_export(server))
        print(f"[export] server: {server_figures}", flush=True)
        cli_figures = _cli_export(store)
        print(f"[export] cli: {cli_figures}", flush=True)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        else:
            shutil.rmtree(store / "exports", ignore_errors=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    doc: dict[str, Any] = {
        "size": args.size,
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["python -m bench.export", *(argv or sys.argv[1:])]),
        "machine": machine.describe(),
        "size_parameters": asdict(size) if temp is not None else {"store": str(args.store)},
        "store": {"resources": resources, "db_mib": db_mib},
        "settings": {
            k: v
            for k, v in Settings().model_dump(mode="json").items()
            if k.startswith("export_") or k == "sqlite_synchronous"
        },
        "server": server_figures,
        "cli": cli_figures,
        "json": f"{stamp}-export-{args.size}.json",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / doc["json"]).write_text(json.dumps(doc, indent=2) + "\n")
    md = _markdown(doc)
    (args.out / f"{stamp}-export-{args.size}.md").write_text(md)
    (args.out / f"latest-export-{args.size}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
