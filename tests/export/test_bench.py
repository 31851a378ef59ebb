"""The export benchmark harness at its smoke size (a real server process; slow, not by default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.export import main


@pytest.mark.slow
def test_bench_export_smoke(tmp_path: Path) -> None:
    assert main(["--size", "smoke", "--out", str(tmp_path)]) == 0
    [result] = tmp_path.glob("*-export-smoke.json")
    doc = json.loads(result.read_text())
    assert doc["server"]["resources"] >= doc["store"]["resources"] > 2000
    assert doc["cli"]["resources"] >= 2000
    assert doc["server"]["resources_per_s"] > 0 and doc["cli"]["rss_mib_peak"] > 0
    assert (tmp_path / "latest-export-smoke.md").is_file()
