"""Restart durability against a real server process: write, kill -9, start again, read back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FHIR_SERVER_SEED": "false", "FHIR_SERVER_AUTH": "off"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fhir_server",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--no-seed",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def test_data_survives_a_killed_server(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    proc = _start(tmp_path, port)
    try:
        written = []
        for i in range(20):
            r = httpx.post(
                f"{base}/Patient",
                json={"resourceType": "Patient", "name": [{"family": f"Durable{i}"}]},
            )
            assert r.status_code == 201
            written.append(r.json())
        r = httpx.put(f"{base}/Patient/{written[0]['id']}", json={**written[0], "gender": "female"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = _start(tmp_path, port)
    try:
        for res in written:
            r = httpx.get(f"{base}/Patient/{res['id']}")
            assert r.status_code == 200
            assert r.json()["name"] == res["name"]
        assert httpx.get(f"{base}/Patient/{written[0]['id']}").json()["meta"]["versionId"] == "2"
        assert httpx.get(f"{base}/Patient", params={"_summary": "count"}).json()["total"] == 20
    finally:
        proc.terminate()
        proc.wait()
