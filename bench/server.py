"""Start and stop a fresh server process (bench.launcher) on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from bench.client import LOCALHOST

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and all its live descendants (uvicorn's worker processes and the
    server's own helper processes, e.g. its validation pool)."""
    return sum(_tree(root).values())


def _tree(root: int) -> dict[int, float]:
    """{pid: CPU seconds} of `root` and its live descendants."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = st
    tree: dict[int, float] = {}
    for pid in cpu:
        p = pid
        while p in parents and p != root and p > 1:
            p = parents[p]
        if p == root:
            tree[pid] = cpu[pid]
    return tree


def system_cpu_seconds() -> float:
    """CPU seconds all processes on the machine used since boot (busy time, not idle/iowait)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def wait_for_quiet(max_wait_s: float, busy_below: float = 0.3, window_s: float = 3.0) -> float:
    """Wait (at most `max_wait_s`) until the machine's CPU use over `window_s` is below
    `busy_below` cores; return the last measured use. For shared machines."""
    deadline = time.monotonic() + max_wait_s
    while True:
        m0, t0 = system_cpu_seconds(), time.monotonic()
        time.sleep(window_s)
        busy = (system_cpu_seconds() - m0) / (time.monotonic() - t0)
        if busy < busy_below or time.monotonic() >= deadline:
            return round(busy, 2)


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Server:
    """A context manager: a server with a temp data dir, started fresh and stopped at exit."""

    def __init__(
        self, workers: int = 1, startup_timeout: float = 60.0, data_dir: Path | None = None
    ) -> None:
        self.workers = workers
        # A prebuilt data directory (kept at exit) instead of a fresh temporary one.
        self._given_data = data_dir
        self.startup_timeout = startup_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir: Path | None = None
        self.command: list[str] = []
        self.startup_seconds = 0.0

    def __enter__(self) -> Server:
        self.data_dir = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
        data = self._given_data or self.data_dir / "data"
        self.port = free_port()
        self.command = [
            sys.executable,
            "-m",
            "bench.launcher",
            "--port",
            str(self.port),
            "--data-dir",
            str(data),
            "--workers",
            str(self.workers),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log = (self.data_dir / "server.log").open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOCALHOST, self.port), timeout=1) as s,
            ):
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {self.startup_timeout}s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def process_count(self) -> int:
        return len(_tree(self.proc.pid)) if self.proc is not None else 0

    def log_tail(self, chars: int = 3000) -> str:
        if self.data_dir is None:
            return ""
        try:
            return (self.data_dir / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def data_bytes(self) -> int:
        if self.data_dir is None:
            return 0
        return sum(f.stat().st_size for f in self.data_dir.rglob("*") if f.is_file())

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the session this harness started
                proc.wait(timeout=10)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
