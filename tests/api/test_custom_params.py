"""SearchParameters from profiles/ and stored ones (after `reindex`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from tests.api.conftest import BASE, make_settings

# Run on every storage engine (tests/storage/engines.py).
pytestmark = pytest.mark.all_engines

MODALITY = "https://fhir-server.dev/fhir/StructureDefinition/virtual-modality"


def _encounter(id: str, modality: str) -> dict[str, object]:
    return {
        "resourceType": "Encounter",
        "id": id,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
        "extension": [
            {"url": MODALITY, "valueCoding": {"system": "urn:modality", "code": modality}}
        ],
        "period": {"start": "2026-10-01T10:00:00Z", "end": "2026-10-01T10:20:00Z"},
    }


async def test_profile_parameter_is_searchable(client: httpx.AsyncClient) -> None:
    await client.put("Encounter/v1", json=_encounter("v1", "video"))
    await client.put("Encounter/v2", json=_encounter("v2", "audio"))
    r = await client.get("Encounter", params={"modality": "video"})
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["v1"]
    cs = (await client.get("metadata")).json()
    enc = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Encounter")
    assert any(p["name"] == "modality" for p in enc["searchParam"])


async def test_stored_parameter_after_reindex(tmp_path: Path, storage_url: str | None) -> None:
    settings = make_settings(tmp_path, storage=storage_url)
    sp = {
        "resourceType": "SearchParameter",
        "id": "pat-nick",
        "status": "active",
        "url": "http://example.org/SearchParameter/patient-nickname",
        "name": "nickname",
        "description": "A patient's nickname",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.where(use='nickname').given",
    }
    pat = {"resourceType": "Patient", "id": "n1", "name": [{"use": "nickname", "given": ["Bobby"]}]}
    app = create_app(settings)
    async with LifespanManager(app) as m:
        transport = httpx.ASGITransport(app=m.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            assert (await c.put("Patient/n1", json=pat)).status_code == 201
            assert (await c.put("SearchParameter/pat-nick", json=sp)).status_code == 201
            assert (await c.get("Patient", params={"nickname": "bob"})).status_code == 400
    done = subprocess.run(
        [sys.executable, "-m", "fhir_server", "reindex", "--data-dir", str(settings.data_dir)]
        + (["--storage", storage_url] if storage_url else []),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "reindexed 2 resources" in done.stdout
    app = create_app(settings)
    async with LifespanManager(app) as m:
        transport = httpx.ASGITransport(app=m.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            r = await c.get("Patient", params={"nickname": "bob"})
            assert r.status_code == 200, r.text
            assert [e["resource"]["id"] for e in r.json()["entry"]] == ["n1"]
