"""The benchmark harness at its smoke size, end to end: a fresh server process, real HTTP.

This checks that the harness works and its numbers are sane, not how fast the server is: the
performance targets live in bench/README.md and are measured with `make bench`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import run, wrk


def _results(out: Path) -> dict[str, Any]:
    files = sorted(out.glob("*-smoke.json"))
    assert len(files) == 1, files
    md = files[0].with_suffix(".md")
    assert md.is_file() and (out / "latest-smoke.md").read_text() == md.read_text()
    doc: dict[str, Any] = json.loads(files[0].read_text())
    return doc


def test_bench_smoke_all_workloads(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_SERVER_SHARED_DATA", str(shared_data))
    assert run.main(["--size", "smoke", "--out", str(tmp_path)]) == 0
    doc = _results(tmp_path)
    w = doc["workloads"]
    for name in ("ingest", "rpm", "crud", "read"):
        assert "failed" not in w[name] and "skipped" not in w[name], w[name]

    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["cpu_model"]
    assert doc["command"].startswith("python -m bench.run --size smoke")

    ingest = w["ingest"]
    assert ingest["prelude"]["bundles_ok"] == 2 and not ingest["prelude"]["refused"]
    assert ingest["refused"] == [] and ingest["bundles_refused"] == 0, ingest["refused"]
    assert ingest["bundles_ok"] == 3 and ingest["entries_not_2xx"] == 0
    assert ingest["resources"] > 3 and ingest["resources_per_s"] > 0

    for name in ("rpm", "crud"):
        res = w[name]
        assert res["requests_ok"] > 0 and res["errors"]["count"] == 0, res["errors"]
        assert 0 < res["p50_ms"] <= res["p95_ms"] <= res["p99_ms"]
    assert all(n > 0 for n in w["crud"]["ok_by_kind"].values()), w["crud"]["ok_by_kind"]

    read = w["read"]
    assert read["errors"] == 0 and read["ids_checked_same_bytes"] > 0
    assert read["fhir_requests_per_s"] > 0 and read["ceiling_requests_per_s"] > 0
    assert isinstance(read["ratio"], float) and read["ratio"] > 0
    assert read["generator"] == ("wrk" if wrk.available() else "python")


def test_bench_smoke_read_with_python_generator(tmp_path: Path) -> None:
    """The fallback generator (what CI uses when wrk is absent), on synthetic resources."""
    argv = ["--size", "smoke", "--workload", "read", "--generator", "python"]
    assert run.main([*argv, "--out", str(tmp_path)]) == 0
    read = _results(tmp_path)["workloads"]["read"]
    assert read["generator"] == "python" and read["errors"] == 0
    assert read["id_source"].startswith("synthetic")
    assert isinstance(read["ratio"], float) and read["ratio"] > 0
