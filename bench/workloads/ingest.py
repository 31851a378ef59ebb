"""Ingest: Synthea transaction Bundles POSTed to the base by several concurrent loaders.

The organization and practitioner bundles go first, one at a time; then the patient bundles are
shared among `loaders` connections. Resources are counted from the 2xx entries of each
transaction-response; a refused bundle is reported with its OperationOutcome diagnostics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.client import Connection
from bench.data import BundleSet, read_bundle
from bench.loadgen import diagnostics, latency_summary, measured, per_cpu
from bench.server import Server

HEADERS = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
MAX_REFUSED_KEPT = 20
BUNDLE_TIMEOUT_S = 600.0


@dataclass
class Tally:
    bundles_ok: int = 0
    resources: int = 0
    entries_not_2xx: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    refused_count: int = 0
    latencies: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # "Type/id" of what was created
    done: list[tuple[float, int]] = field(default_factory=list)  # (finished at, resources)


def _ref_of(location: str) -> str | None:
    """'http://h/fhir/Patient/1/_history/1' -> 'Patient/1'."""
    tail = location.split("/fhir/", 1)[-1].split("/")
    return f"{tail[0]}/{tail[1]}" if len(tail) >= 2 else None


async def _post(conn: Connection, path: Path, tally: Tally, keep_ids: bool) -> None:
    body = await asyncio.to_thread(read_bundle, path)
    t0 = time.perf_counter()
    try:
        resp = await conn.request("POST", "/fhir", body, HEADERS, timeout=BUNDLE_TIMEOUT_S)
    except Exception as exc:
        _refuse(tally, path, body, "exception", f"{type(exc).__name__}: {exc}")
        return
    tally.latencies.append(time.perf_counter() - t0)
    if not 200 <= resp.status < 300:
        _refuse(tally, path, body, str(resp.status), diagnostics(resp.body))
        return
    tally.bundles_ok += 1
    before = tally.resources
    doc = orjson.loads(resp.body)
    for entry in doc.get("entry", []):
        r = entry.get("response", {})
        if str(r.get("status", "")).startswith("2"):
            tally.resources += 1
            ref = _ref_of(r.get("location", "")) if keep_ids else None
            if ref:
                tally.ids.append(ref)
        else:
            tally.entries_not_2xx += 1
    tally.done.append((time.perf_counter(), tally.resources - before))


def slices(done: list[tuple[float, int]], start: float, end: float, n: int = 4) -> list[float]:
    """Resources/s in each of `n` equal slices of [start, end]: does ingest slow as data grows?"""
    width = (end - start) / n
    if width <= 0:
        return []
    counts = [0] * n
    for at, resources in done:
        counts[min(n - 1, max(0, int((at - start) / width)))] += resources
    return [round(c / width, 1) for c in counts]


def _refuse(tally: Tally, path: Path, body: bytes, status: str, why: str) -> None:
    tally.refused_count += 1
    if len(tally.refused) < MAX_REFUSED_KEPT:
        try:
            entries = len(orjson.loads(body).get("entry", []))
        except orjson.JSONDecodeError:
            entries = -1
        tally.refused.append(
            {"bundle": path.name, "status": status, "resources": entries, "diagnostics": why}
        )


async def run(
    server: Server,
    bundles: BundleSet,
    *,
    loaders: int = 4,
    max_seconds: float = 900.0,
    keep_ids: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """Load the prelude, then the patients; (result, ids of created resources)."""
    prelude = Tally()
    conn = Connection(server.port)
    with measured(server) as pre_usage:
        for path in bundles.prelude:
            await _post(conn, path, prelude, keep_ids)
    conn.close()

    tally = Tally()
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for path in bundles.patients:
        queue.put_nowait(path)
    deadline = time.perf_counter() + max_seconds
    stopped_by_time = False

    async def loader() -> None:
        nonlocal stopped_by_time
        c = Connection(server.port)
        try:
            while not queue.empty():
                if time.perf_counter() >= deadline:
                    stopped_by_time = True
                    return
                await _post(c, queue.get_nowait(), tally, keep_ids)
        finally:
            c.close()

    started = time.perf_counter()
    with measured(server) as usage:
        await asyncio.gather(*(loader() for _ in range(loaders)))
    ended = time.perf_counter()
    wall = usage.wall_s or 1e-9
    result: dict[str, Any] = {
        "loaders": loaders,
        "prefer": HEADERS["Prefer"],
        "prelude": {
            "bundles": [p.name for p in bundles.prelude],
            "bundles_ok": prelude.bundles_ok,
            "resources": prelude.resources,
            "seconds": round(pre_usage.wall_s, 3),
            "refused": prelude.refused,
        },
        "patient_bundles_planned": len(bundles.patients),
        "patient_bundles_available": bundles.available_patients,
        "bundles_ok": tally.bundles_ok,
        "bundles_refused": tally.refused_count,
        "resources": tally.resources,
        "entries_not_2xx": tally.entries_not_2xx,
        "seconds": round(usage.wall_s, 3),
        "resources_per_s": round(tally.resources / wall, 1),
        "bundles_per_s": round(tally.bundles_ok / wall, 2),
        "resources_per_server_cpu_s": per_cpu(tally.resources, usage.server_cpu_s),
        "bundle_latency": latency_summary(tally.latencies),
        # resources/s in each quarter of the run, first to last (bundles are counted when done)
        "resources_per_s_by_quarter": slices(tally.done, started, ended),
        "stopped_by_time_limit": stopped_by_time,
        "refused": tally.refused,
        "usage": usage.as_dict(),
    }
    return result, prelude.ids + tally.ids
