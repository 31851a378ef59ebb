"""`fhir-server export --type ... --since ... --out DIR`: straight from the store, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.cli import main
from fhir_server.fhir import jsonio

SEED = Path(__file__).resolve().parents[2] / "seed_data"


def test_cli_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("FHIR_SERVER_DATA_DIR", str(data))  # restored after the test
    monkeypatch.setenv("FHIR_SERVER_VALIDATION_PROCESSES", "0")
    monkeypatch.setenv("FHIR_SERVER_EXPORT_LINES_PER_FILE", "10")
    assert main(["load", str(SEED / "10-patient-01.json"), "--data-dir", str(data)]) == 0
    out = tmp_path / "out"
    args = [
        "export",
        "--type",
        "Patient,Observation",
        "--since",
        "2000-01-01T00:00:00Z",
        "--out",
        str(out),
        "--data-dir",
        str(data),
    ]
    assert main(args) == 0
    manifest = jsonio.loads((out / "manifest.json").read_bytes())
    assert {o["type"] for o in manifest["output"]} == {"Patient", "Observation"}
    # Local files: no token; `request` is the command line, not a made-up URL.
    assert manifest["requiresAccessToken"] is False
    assert manifest["request"] == (
        f"fhir-server export --type Patient,Observation --since 2000-01-01T00:00:00Z --out {out}"
    )
    for item in manifest["output"]:
        lines = (out / item["url"]).read_bytes().splitlines()
        assert len(lines) == item["count"] <= 10
        assert all(jsonio.loads(ln)["resourceType"] == item["type"] for ln in lines)
    assert "exported" in capsys.readouterr().out
    assert main(args) == 2  # the folder holds an export already
    assert (
        main([*args[:-4], "--since", "bad", "--out", str(tmp_path / "o2"), "--data-dir", str(data)])
        == 2
    )
