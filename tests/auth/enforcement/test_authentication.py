"""The HTTP call site: who needs a token, and 401 vs 403 (SMART.md 1.3 "Resource server",
1.8, 2.11)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.api.conftest import BASE, make_settings
from tests.auth.enforcement.conftest import Server, grant, ids

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_no_token_is_401_with_www_authenticate(shared: Server) -> None:
    """SMART.md 2.11 g10_unauthorized_access: reading Patient/{patient} without a token -> 401."""
    resp = await shared.http.get("Patient/p1")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["resourceType"] == "OperationOutcome"


async def test_every_fhir_path_needs_a_token(shared: Server) -> None:
    """SMART.md 1.3 "Resource server SHALL validate the access token": search, history, system
    level, batch and operations all need one."""
    for method, path in [("GET", "Observation"), ("GET", "_history"), ("GET", ""), ("POST", ""),
                         ("POST", "Observation/_search"), ("GET", "Patient/p1/Observation"),
                         ("DELETE", "Observation/o1"), ("GET", "$anything")]:  # fmt: skip
        resp = await shared.http.request(method, path)
        assert resp.status_code == 401, (method, path)
        assert "www-authenticate" in resp.headers


async def test_rejected_token_is_401_and_keeps_the_authenticators_challenge(shared: Server) -> None:
    """SMART.md section 1 E "expired, revoked or wrong-audience token -> 401" (as decided by the
    authenticator: its Unauthorized reaches the client with its WWW-Authenticate)."""
    resp = await shared.http.get("Patient/p1", headers={"Authorization": "Bearer revoked"})
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    resp = await shared.http.get("Patient/p1", headers={"Authorization": "Basic YTpi"})
    assert resp.status_code == 401


async def test_token_in_query_string_is_not_accepted(shared: Server) -> None:
    """SMART.md 4.3 "Never accept tokens in query strings"."""
    resp = await shared.http.get("Patient/p1", params={"access_token": "admin"})
    assert resp.status_code == 401


async def test_metadata_and_discovery_stay_public(shared: Server) -> None:
    """SMART.md 1.1 / 2.1 and 2.5: `.well-known/smart-configuration` and `metadata` are reached
    without a token (CORS-open discovery)."""
    resp = await shared.http.get("metadata")
    assert resp.status_code == 200
    assert resp.json()["resourceType"] == "CapabilityStatement"
    assert (await shared.http.head("metadata")).status_code == 200
    resp = await shared.http.get(".well-known/smart-configuration")
    assert resp.status_code != 401


async def test_insufficient_scope_is_403(shared: Server) -> None:
    """SMART.md 2.26 g10_restricted_access_test: searching a type the grant lacks -> 401 or 403
    (here 403); allowed types -> 200."""
    h = shared.scopes("patient/Observation.rs")
    assert (await shared.http.get("Condition", headers=h)).status_code == 403
    assert (await shared.http.get("Observation", headers=h)).status_code == 200
    outcome = (await shared.http.get("Condition", headers=h)).json()
    assert outcome["issue"][0]["code"] == "forbidden"


async def test_patient_context_readable_with_token(shared: Server) -> None:
    """SMART.md 2.12 g10_patient_context / 2.20: Patient/{patient} from the token response can be
    read with the token (200, type Patient)."""
    h = shared.scopes("patient/Patient.rs", "launch/patient", "openid", "fhirUser")
    resp = await shared.http.get("Patient/p1", headers=h)
    assert resp.status_code == 200
    assert resp.json()["resourceType"] == "Patient"


async def test_system_wildcard_is_unrestricted(shared: Server) -> None:
    """SMART.md 1.4 `system/` scopes (Backend Services): type and letter checks only."""
    h = shared.scopes("system/*.rs", patient=None)
    body = (await shared.http.get("Observation", headers=h)).json()
    assert ids(body) == {"Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4"}
    resp = await shared.http.post("Observation", json={}, headers=h)
    assert resp.status_code == 403


async def test_secure_by_default_with_the_real_authenticator(tmp_path: Path) -> None:
    """Issue "Auth is on by default" / SMART.md 2.11: with settings.auth "on" (the default) and the
    server's own token check, FHIR data needs a token while metadata stays public."""
    assert Settings.model_fields["auth"].default == "on"
    app = create_app(make_settings(tmp_path, auth="on"))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            resp = await http.get("Patient")
            assert resp.status_code == 401
            assert resp.headers["www-authenticate"].startswith("Bearer")
            resp = await http.get("Patient", headers={"Authorization": "Bearer not-a-token"})
            assert resp.status_code == 401
            assert (await http.get("metadata")).status_code == 200


async def test_encounter_context_readable(shared: Server) -> None:
    """SMART.md 2.12 g10_encounter_context: the `encounter` of an EHR launch can be read."""
    h = shared.token(
        "ehr", grant("patient/Encounter.rs", "patient/Patient.rs", patient="p1", encounter="e1")
    )
    resp = await shared.http.get("Encounter/e1", headers=h)
    assert resp.status_code == 200 and resp.json()["resourceType"] == "Encounter"


async def test_fhir_user_resource_readable(shared: Server) -> None:
    """SMART.md 1.4 identity scopes / 2.17: the id_token's `fhirUser` resource can be read with
    the access token (200) even when no resource scope covers its type; nothing else of it."""
    h = shared.token(
        "dr",
        grant("openid", "fhirUser", "patient/Observation.rs", patient="p1",
              fhir_user="http://testserver/fhir/Practitioner/dr"),
    )  # fmt: skip
    assert (await shared.http.get("Practitioner/dr", headers=h)).status_code == 200
    assert (await shared.http.get("Practitioner/dr/_history/1", headers=h)).status_code == 200
    assert (await shared.http.get("Practitioner", headers=h)).status_code == 403
    assert (await shared.http.put("Practitioner/dr", json={"resourceType": "Practitioner",
                                  "id": "dr"}, headers=h)).status_code == 403  # fmt: skip
    no_claim = shared.token(
        "dr2", grant("openid", "patient/Observation.rs", patient="p1", fhir_user="Practitioner/dr")
    )
    assert (await shared.http.get("Practitioner/dr", headers=no_claim)).status_code == 403


async def test_v1_scopes_over_http(server: Server) -> None:
    """SMART.md 2.28 g10_smart_v1_scopes: a grant of `patient/*.read` works (v1 -> v2 `rs`);
    it does not permit writes."""
    h = server.scopes("launch/patient", "patient/*.read")
    assert (await server.http.get("Patient/p1", headers=h)).status_code == 200
    assert ids((await server.http.get("Condition", headers=h)).json()) == {
        "Condition/c1", "Condition/c2"}  # fmt: skip
    new = {"resourceType": "Patient", "name": [{"family": "X"}]}
    assert (await server.http.post("Patient", json=new, headers=h)).status_code == 403
    w = server.scopes("patient/Observation.write")
    assert (await server.http.get("Observation", headers=w)).status_code == 403
    assert (await server.http.delete("Observation/o1", headers=w)).status_code == 204


async def test_export_without_token_is_401(shared: Server) -> None:
    """SMART.md 2.36: Bulk `$export` without a token -> 401."""
    for path in ("$export", "Patient/$export", "Group/g/$export"):
        resp = await shared.http.get(path, headers={"Prefer": "respond-async"})
        assert resp.status_code == 401, path


async def test_tokens_never_logged(shared: Server, caplog: pytest.LogCaptureFixture) -> None:
    """SMART.md 4.3 "Never log `Authorization` headers": requests with a secret token, accepted
    or refused, leave no trace of it in any log record."""
    secret = "s3cr3t-token-value"
    h = shared.token(secret, grant("patient/Observation.rs", patient="p1"))
    with caplog.at_level(logging.DEBUG):
        await shared.http.get("Observation", headers=h)
        await shared.http.get("Condition", headers=h)
        await shared.http.get("Observation", headers={"Authorization": f"Bearer {secret}x"})
    assert not [r for r in caplog.records if secret in r.getMessage()]
