"""read, vread, create, update, patch, delete and their error cases, over HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import BASE

# Run on every storage engine (tests/storage/engines.py).
pytestmark = pytest.mark.all_engines

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:mrn", "value": "123"}],
    "name": [{"family": "Chalmers", "given": ["Peter"]}],
    "gender": "male",
    "birthDate": "1974-12-25",
}


async def test_create_read_vread(client: httpx.AsyncClient) -> None:
    r = await client.post("Patient", json=PATIENT)
    assert r.status_code == 201, r.text
    body = r.json()
    pid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"{BASE}/Patient/{pid}/_history/1"
    assert "last-modified" in r.headers
    assert r.headers["content-type"].startswith("application/fhir+json")

    r = await client.get(f"Patient/{pid}")
    assert r.status_code == 200
    assert r.json() == body
    r = await client.get(f"Patient/{pid}/_history/1")
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "1"
    assert (await client.get(f"Patient/{pid}/_history/2")).status_code == 404


async def test_read_unknown_gives_404_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("Patient/nope")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.get("NotAType/1")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_update_versions_and_update_as_create(client: httpx.AsyncClient) -> None:
    r = await client.put("Patient/p1", json={**PATIENT, "id": "p1"})
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "1"
    r = await client.put("Patient/p1", json={**PATIENT, "id": "p1", "gender": "other"})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'
    assert (await client.get("Patient/p1/_history/1")).json()["gender"] == "male"
    assert (await client.get("Patient/p1")).json()["gender"] == "other"


async def test_update_id_rules(client: httpx.AsyncClient) -> None:
    r = await client.put("Patient/p1", json={**PATIENT, "id": "other"})
    assert r.status_code == 400
    r = await client.put("Patient/p1", json=PATIENT)
    assert r.status_code == 400
    r = await client.put("Observation/p1", json={**PATIENT, "id": "p1"})
    assert r.status_code == 400
    r = await client.put("Patient/bad_id!", json={**PATIENT, "id": "bad_id!"})
    assert r.status_code == 400


async def test_if_match(client: httpx.AsyncClient) -> None:
    await client.put("Patient/p1", json={**PATIENT, "id": "p1"})
    await client.put("Patient/p1", json={**PATIENT, "id": "p1", "gender": "female"})
    stale = await client.put(
        "Patient/p1", json={**PATIENT, "id": "p1"}, headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient/p1")).json()["meta"]["versionId"] == "2"
    ok = await client.put("Patient/p1", json={**PATIENT, "id": "p1"}, headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200
    assert ok.json()["meta"]["versionId"] == "3"


async def test_delete_then_410_and_history(client: httpx.AsyncClient) -> None:
    await client.put("Patient/p1", json={**PATIENT, "id": "p1"})
    r = await client.delete("Patient/p1")
    assert r.status_code == 204
    r = await client.get("Patient/p1")
    assert r.status_code == 410
    assert r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient/p1/_history/1")).status_code == 200
    assert (await client.get("Patient/p1/_history/2")).status_code == 410
    hist = (await client.get("Patient/p1/_history")).json()
    assert hist["type"] == "history"
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT"]
    # deleting again is idempotent and writes no new version
    assert (await client.delete("Patient/p1")).status_code == 204
    assert (await client.get("Patient/p1/_history")).json()["total"] == 2
    # re-creating after delete continues the version sequence
    r = await client.put("Patient/p1", json={**PATIENT, "id": "p1"})
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "3"


async def test_json_patch(client: httpx.AsyncClient) -> None:
    await client.put("Patient/p1", json={**PATIENT, "id": "p1"})
    patch = [
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/name/0/given/-", "value": "Jim"},
    ]
    r = await client.patch(
        "Patient/p1", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["gender"] == "female"
    assert body["name"][0]["given"] == ["Peter", "Jim"]
    assert body["meta"]["versionId"] == "2"
    bad = [{"op": "replace", "path": "/gender", "value": "nonsense"}]
    r = await client.patch(
        "Patient/p1", json=bad, headers={"Content-Type": "application/json-patch+json"}
    )
    assert r.status_code == 422
    r = await client.patch(
        "Patient/p1",
        json=[{"op": "test", "path": "/gender", "value": "male"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 422
    assert (await client.get("Patient/p1")).json()["meta"]["versionId"] == "2"


async def test_prefer_return(client: httpx.AsyncClient) -> None:
    r = await client.post("Patient", json=PATIENT, headers={"Prefer": "return=minimal"})
    assert r.status_code == 201
    assert r.content == b""
    assert r.headers["location"]
    r = await client.post("Patient", json=PATIENT, headers={"Prefer": "return=OperationOutcome"})
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_decimals_keep_their_text(client: httpx.AsyncClient) -> None:
    obs = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
        b'"valueQuantity":{"value":1.50,"unit":"kg"},'
        b'"component":[{"code":{"text":"x"},"valueQuantity":{"value":6.0}}]}'
    )
    r = await client.post(
        "Observation", content=obs, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 201, r.text
    read = await client.get(f"Observation/{r.json()['id']}")
    assert b'"value":1.50' in read.content
    assert b'"value":6.0' in read.content


async def test_validation_errors_are_422(client: httpx.AsyncClient) -> None:
    r = await client.post("Patient", json={**PATIENT, "gender": "done"})
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert "gender" in " ".join(issue.get("expression", [])) + issue["diagnostics"]
    r = await client.post(
        "Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"value": "72"},
        },
    )
    assert r.status_code == 422
    r = await client.post("Patient", json={**PATIENT, "unknownElement": 1})
    assert r.status_code == 422


async def test_malformed_and_wrong_type_bodies(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "Patient", content=b"{not json", headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.post("Patient", json={"resourceType": "Observation", "status": "final"})
    assert r.status_code == 400
    r = await client.post("Patient", json=[1, 2])
    assert r.status_code == 400
    deep: object = {}
    for _ in range(200):
        deep = {"a": deep}
    r = await client.post("Patient", json={"resourceType": "Patient", "extension": [deep]})
    assert r.status_code == 400


async def test_xml_is_refused_clearly(client: httpx.AsyncClient) -> None:
    r = await client.get("metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406
    assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.get("metadata", params={"_format": "xml"})
    assert r.status_code == 406
    r = await client.post(
        "Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert r.status_code == 415
    assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.get("metadata", params={"_format": "json"})
    assert r.status_code == 200


async def test_method_not_allowed(client: httpx.AsyncClient) -> None:
    r = await client.delete("metadata")
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_conditional_create(client: httpx.AsyncClient) -> None:
    h = {"If-None-Exist": "identifier=urn:mrn|123"}
    first = await client.post("Patient", json=PATIENT, headers=h)
    assert first.status_code == 201
    again = await client.post("Patient", json=PATIENT, headers=h)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    await client.post("Patient", json=PATIENT)
    several = await client.post("Patient", json=PATIENT, headers=h)
    assert several.status_code == 412


async def test_conditional_update_and_delete(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "Patient",
        params={"identifier": "urn:mrn|777"},
        json={**PATIENT, "identifier": [{"system": "urn:mrn", "value": "777"}]},
    )
    assert r.status_code == 201
    pid = r.json()["id"]
    r = await client.put(
        "Patient",
        params={"identifier": "urn:mrn|777"},
        json={**PATIENT, "gender": "female", "identifier": [{"system": "urn:mrn", "value": "777"}]},
    )
    assert r.status_code == 200
    assert r.json()["id"] == pid
    assert r.json()["meta"]["versionId"] == "2"
    r = await client.delete("Patient", params={"identifier": "urn:mrn|777"})
    assert r.status_code == 204
    assert (await client.get(f"Patient/{pid}")).status_code == 410


async def test_request_size_limit(client: httpx.AsyncClient) -> None:
    big = {**PATIENT, "text": {"status": "generated", "div": "<div>" + "x" * 11_000_000 + "</div>"}}
    r = await client.post("Patient", json=big)
    assert r.status_code == 413
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_health(client: httpx.AsyncClient) -> None:
    root = str(client.base_url).removesuffix("/fhir/").removesuffix("/fhir")
    assert (await client.get(f"{root}/healthz")).status_code == 200
    assert (await client.get(f"{root}/readyz")).json()["status"] == "ready"
