"""Export under SMART authorization: kick-off, status and files all need the token (401
without), only the client that started a job may poll or download it, and the token's scopes
bound what is exported (a patient/ token: its patient's compartment only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server.auth.grant import AccessGrant, Authenticate
from fhir_server.errors import Unauthorized
from tests.export.conftest import (
    ASYNC,
    download,
    export_settings,
    observation,
    patient,
    post_batch,
    running,
    wait_done,
)

LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}
GRANTS = {
    "admin": ("admin-app", ("system/*.cruds",), None),
    "bulk": ("bulk-app", ("system/*.rs",), None),
    "other": ("other-app", ("system/*.rs",), None),
    "patients-only": ("bulk-app", ("system/Patient.rs",), None),
    "p1": ("portal", ("patient/*.rs",), "p1"),
    "p1-lab": (
        "portal",
        ("patient/Patient.rs", "patient/Observation.rs?category=laboratory"),
        "p1",
    ),
}


def _authenticate() -> Authenticate:
    async def authenticate(header: str | None) -> AccessGrant:
        token = (header or "").removeprefix("Bearer ")
        if token not in GRANTS:
            raise Unauthorized("This server requires an access token")
        client, scopes, pid = GRANTS[token]
        return AccessGrant(client, scopes, "jti", 4_000_000_000, patient=pid)

    return authenticate


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(export_settings(tmp_path)) as (app, client):
        app.state.services.authenticate = _authenticate()
        client.headers.update(bearer("admin"))
        lab = {**observation("lab1", "p1", "2345-7"), "category": [LAB]}
        await post_batch(
            client,
            [
                patient("p1"),
                patient("p2"),
                observation("o1", "p1"),
                observation("o2", "p2"),
                lab,
                {"resourceType": "Practitioner", "id": "dr"},
            ],
        )
        del client.headers["Authorization"]
        yield client


async def _export(
    http: httpx.AsyncClient, token: str, path: str = "$export", **params: str
) -> dict[str, set[str]]:
    r = await http.get(path, params=params, headers={**ASYNC, **bearer(token)})
    assert r.status_code == 202, r.text
    url = r.headers["Content-Location"]
    http.headers.update(bearer(token))
    try:
        r = await wait_done(http, url)
        assert r.status_code == 200, r.text
        data = await download(http, r.json())
    finally:
        del http.headers["Authorization"]
    return {t: {x["id"] for x in rs} for t, rs in data.items()}


async def test_no_token_401_everywhere(http: httpx.AsyncClient) -> None:
    assert (await http.get("$export", headers=ASYNC)).status_code == 401
    r = await http.get("$export", headers={**ASYNC, **bearer("bulk")}, params={"_type": "Patient"})
    url = r.headers["Content-Location"]
    r = await http.get(url)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert (await http.delete(url)).status_code == 401
    http.headers.update(bearer("bulk"))
    r = await wait_done(http, url)
    file_url = r.json()["output"][0]["url"]
    del http.headers["Authorization"]
    assert (await http.get(file_url)).status_code == 401
    assert (await http.get(file_url, headers=bearer("other"))).status_code == 403
    refused = await http.get(url, headers=bearer("other"))
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert (await http.get(file_url, headers=bearer("bulk"))).status_code == 200


async def test_system_token_exports_everything(http: httpx.AsyncClient) -> None:
    got = await _export(http, "bulk", _type="Patient,Observation,Practitioner")
    assert got == {
        "Patient": {"p1", "p2"},
        "Observation": {"o1", "o2", "lab1"},
        "Practitioner": {"dr"},
    }


async def test_scopes_bound_the_export(http: httpx.AsyncClient) -> None:
    r = await http.get(
        "$export", params={"_type": "Observation"}, headers={**ASYNC, **bearer("patients-only")}
    )
    assert r.status_code == 403
    assert await _export(http, "patients-only") == {"Patient": {"p1", "p2"}}
    # A patient/ token: only its patient's compartment, whatever the level.
    assert await _export(http, "p1") == {"Patient": {"p1"}, "Observation": {"o1", "lab1"}}
    assert await _export(http, "p1", "Patient/$export") == {
        "Patient": {"p1"},
        "Observation": {"o1", "lab1"},
    }
    # Granular scopes apply too.
    assert await _export(http, "p1-lab") == {"Patient": {"p1"}, "Observation": {"lab1"}}


def _patient_body(pid: str, *extra: dict[str, str]) -> dict[str, object]:
    ref = {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}
    return {"resourceType": "Parameters", "parameter": [ref, *extra]}


async def test_patient_token_cannot_export_another_patient(http: httpx.AsyncClient) -> None:
    """A patient/ token naming another patient in `patient`: 403, not an empty-ish export."""
    ctype = {**ASYNC, "Content-Type": "application/fhir+json"}
    for token in ("p1", "p1-lab"):
        r = await http.post(
            "Patient/$export", json=_patient_body("p2"), headers={**ctype, **bearer(token)}
        )
        assert r.status_code == 403, r.text
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "forbidden"
        assert "Patient/p2" in outcome["issue"][0]["diagnostics"]
    # Its own patient is fine; so is another patient for a system/ token.
    only = {"name": "_type", "valueString": "Patient"}
    for token, pid in (("p1", "p1"), ("bulk", "p2")):
        r = await http.post(
            "Patient/$export", json=_patient_body(pid, only), headers={**ctype, **bearer(token)}
        )
        assert r.status_code == 202, r.text


async def test_manifest_requires_access_token_when_auth_is_on(http: httpx.AsyncClient) -> None:
    r = await http.get("$export", params={"_type": "Patient"}, headers={**ASYNC, **bearer("bulk")})
    http.headers.update(bearer("bulk"))
    try:
        r = await wait_done(http, r.headers["Content-Location"])
    finally:
        del http.headers["Authorization"]
    assert r.json()["requiresAccessToken"] is True
