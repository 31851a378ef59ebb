"""GET load with `wrk` (a C load generator, Debian package `wrk`), when it is installed.

wrk cycles through a list of paths with a small Lua script and prints one JSON line at the end.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import LOCALHOST
from bench.loadgen import per_cpu, usage_dict
from bench.server import Server, self_cpu_seconds, system_cpu_seconds

_SCRIPT = r"""
local paths = {}
local idx = 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"mean_us":%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean))
end
"""


def available() -> str | None:
    """The wrk executable's path, or None."""
    return shutil.which("wrk")


def version() -> str | None:
    exe = available()
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return (
        (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else None
    )


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def get_load(
    server: Server, paths: list[str], *, connections: int, seconds: float, threads: int = 1
) -> dict[str, Any]:
    """Closed-loop GETs of `paths` in turn for `seconds`; requests/s, latency, errors, CPU."""
    exe = available()
    if exe is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "paths.lua"
        script.write_text(_SCRIPT)
        path_file = Path(tmp) / "paths.txt"
        path_file.write_text("\n".join(paths) + "\n")
        cmd = [
            exe,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://{LOCALHOST}:{server.port}",
            "--",
            str(path_file),
        ]
        s0, c0 = server.cpu_seconds(), _children_cpu() + self_cpu_seconds()
        m0, t0 = system_cpu_seconds(), time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 60)
        usage = usage_dict(
            time.perf_counter() - t0,
            server.cpu_seconds() - s0,
            _children_cpu() + self_cpu_seconds() - c0,
            system_cpu_seconds() - m0,
        )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {out.returncode}): {out.stderr[-500:]}")
    r = json.loads(line[len("BENCH_JSON ") :])
    wall = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    ok = r["requests"] - r["status"]
    return {
        "requests_ok": ok,
        "requests_per_s": round(ok / wall, 1),
        "requests_per_server_cpu_s": per_cpu(ok, usage["server_cpu_s"]),
        "p50_ms": round(r["p50_us"] / 1000, 3),
        "p95_ms": round(r["p95_us"] / 1000, 3),
        "p99_ms": round(r["p99_us"] / 1000, 3),
        "mean_ms": round(r["mean_us"] / 1000, 3),
        "errors": {
            "count": errors,
            "kinds": {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]},
        },
        "usage": usage,
    }
