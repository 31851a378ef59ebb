"""Closed-loop load generation with the raw client: N connections, each sending its next request
as soon as the previous answer arrives, bounded by a request count and a deadline."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.client import Connection, Response
from bench.server import Server, self_cpu_seconds, system_cpu_seconds

# One operation: (label, request bytes, what to do with the response or None).
Op = tuple[str, bytes, Callable[[Response], None] | None]
MakeOp = Callable[[Connection, int], Op]  # (the worker's connection, worker index) -> Op
MAX_ERROR_KINDS = 10


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list; None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def latency_summary(latencies_s: list[float]) -> dict[str, float | None]:
    s = sorted(latencies_s)
    ms = 1000.0

    def p(q: float) -> float | None:
        v = percentile(s, q)
        return None if v is None else round(v * ms, 3)

    mean = round(sum(s) / len(s) * ms, 3) if s else None
    return {"p50_ms": p(50), "p95_ms": p(95), "p99_ms": p(99), "mean_ms": mean}


def per_cpu(count: int, cpu_s: float) -> float | None:
    return round(count / cpu_s, 1) if cpu_s > 0 else None


def diagnostics(body: bytes) -> str:
    """The diagnostics of an OperationOutcome body, or the start of the body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(doc, dict) and isinstance(doc.get("issue"), list):
        return "; ".join(str(i.get("diagnostics", i.get("code", ""))) for i in doc["issue"])[:300]
    return body[:200].decode("utf-8", "replace")


@dataclass
class Errors:
    """Non-2xx answers and failures, counted by kind, with a few distinct diagnostics kept."""

    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, label: str, what: str) -> None:
        self.count += 1
        key = f"{label}: {what}"
        if key in self.kinds or len(self.kinds) < MAX_ERROR_KINDS:
            self.kinds[key] += 1
        else:
            self.kinds["(other kinds)"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "kinds": dict(self.kinds.most_common())}


@dataclass
class Usage:
    """Wall time and the CPU seconds the server and this generator used over a window."""

    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0  # every process on the machine

    def as_dict(self) -> dict[str, float]:
        return usage_dict(self.wall_s, self.server_cpu_s, self.client_cpu_s, self.machine_cpu_s)


def usage_dict(wall: float, server: float, client: float, machine: float) -> dict[str, float]:
    """CPU use over a window; `other_cores_busy` is what processes outside this run used."""
    w = wall or 1e-9
    return {
        "wall_s": round(wall, 3),
        "server_cpu_s": round(server, 3),
        "client_cpu_s": round(client, 3),
        "server_cores_busy": round(server / w, 2),
        "client_cores_busy": round(client / w, 2),
        "other_cores_busy": round(max(0.0, machine - server - client) / w, 2),
    }


@contextmanager
def measured(server: Server) -> Iterator[Usage]:
    usage = Usage()
    s0, c0, m0 = server.cpu_seconds(), self_cpu_seconds(), system_cpu_seconds()
    t0 = time.perf_counter()
    try:
        yield usage
    finally:
        usage.wall_s = time.perf_counter() - t0
        usage.server_cpu_s = server.cpu_seconds() - s0
        usage.client_cpu_s = self_cpu_seconds() - c0
        usage.machine_cpu_s = system_cpu_seconds() - m0


@dataclass
class LoopResult:
    ok: int
    errors: Errors
    latencies: dict[str, list[float]]  # label -> latencies (s) of 2xx answers
    status: Counter[str]
    usage: Usage

    def summary(self) -> dict[str, Any]:
        all_lat = [x for v in self.latencies.values() for x in v]
        wall = self.usage.wall_s or 1e-9
        out: dict[str, Any] = {
            "requests_ok": self.ok,
            "requests_per_s": round(self.ok / wall, 1),
            # robust to other processes taking CPU: requests per CPU-second the server used
            "requests_per_server_cpu_s": per_cpu(self.ok, self.usage.server_cpu_s),
            **latency_summary(all_lat),
            "errors": self.errors.as_dict(),
            "status": dict(sorted(self.status.items())),
            "usage": self.usage.as_dict(),
        }
        if len(self.latencies) > 1:
            out["by_operation"] = {
                k: {"ok": len(v), **latency_summary(v)} for k, v in sorted(self.latencies.items())
            }
        return out


async def closed_loop(
    server: Server,
    make_op: MakeOp,
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    timeout: float = 30.0,
) -> LoopResult:
    """Run `concurrency` workers until `max_requests` were sent or `max_seconds` passed."""
    conns = [Connection(server.port) for _ in range(concurrency)]
    latencies: dict[str, list[float]] = {}
    status: Counter[str] = Counter()
    errors = Errors()
    ok = 0
    issued = 0
    deadline = time.perf_counter() + max_seconds
    clock = time.perf_counter

    async def worker(i: int) -> None:
        nonlocal ok, issued
        conn = conns[i]
        while issued < max_requests and clock() < deadline:
            issued += 1
            label, request, after = make_op(conn, i)
            t0 = clock()
            try:
                resp = await conn.send(request, timeout)
            except Exception as exc:  # broken connection or timeout: an error, keep going
                errors.add(label, f"{type(exc).__name__}: {exc}"[:200])
                status["exception"] += 1
                continue
            elapsed = clock() - t0
            status[str(resp.status)] += 1
            if 200 <= resp.status < 300:
                ok += 1
                latencies.setdefault(label, []).append(elapsed)
            else:
                errors.add(label, f"HTTP {resp.status} {diagnostics(resp.body)}")
            if after is not None:
                after(resp)

    with measured(server) as usage:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    for c in conns:
        c.close()
    return LoopResult(ok, errors, latencies, status, usage)
