"""batch and transaction Bundles: atomicity, urn:uuid and conditional references, order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

# Run on every storage engine (tests/storage/engines.py).
pytestmark = pytest.mark.all_engines

PATIENT = {"resourceType": "Patient", "name": [{"family": "Bundle"}], "gender": "female"}


def _obs(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


async def test_transaction_resolves_urn_uuid(client: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:obs-1",
                "resource": _obs("urn:uuid:pat-1"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:pat-1",
                "resource": PATIENT,
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    obs_loc = body["entry"][0]["response"]["location"]
    pat_loc = body["entry"][1]["response"]["location"]
    pat_ref = "/".join(pat_loc.split("/fhir/")[1].split("/")[:2])
    obs = (await client.get(obs_loc.split("/fhir/")[1].split("/_history")[0])).json()
    assert obs["subject"]["reference"] == pat_ref


async def test_transaction_is_atomic(client: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**PATIENT, "id": "keep-out"},
                "request": {"method": "PUT", "url": "Patient/keep-out"},
            },
            {
                "resource": {**PATIENT, "gender": "not-a-gender"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 422
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "entry 1" in r.json()["issue"][0]["diagnostics"]
    assert (await client.get("Patient/keep-out")).status_code == 404
    assert (await client.get("Patient")).json().get("total") == 0


async def test_transaction_conditional_reference_and_if_none_exist(
    client: httpx.AsyncClient,
) -> None:
    org = {
        "resourceType": "Organization",
        "name": "Clinic",
        "identifier": [{"system": "urn:npi", "value": "42"}],
    }
    entry_org = {
        "fullUrl": "urn:uuid:org",
        "resource": org,
        "request": {
            "method": "POST",
            "url": "Organization",
            "ifNoneExist": "identifier=urn:npi|42",
        },
    }
    first = await client.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry_org]}
    )
    assert first.status_code == 200
    org_loc = first.json()["entry"][0]["response"]["location"]
    pat = {**PATIENT, "managingOrganization": {"reference": "Organization?identifier=urn:npi|42"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry_org, {"resource": pat, "request": {"method": "POST", "url": "Patient"}}],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["response"]["location"] == org_loc
    pat_path = entries[1]["response"]["location"].split("/fhir/")[1].split("/_history")[0]
    stored = (await client.get(pat_path)).json()
    org_id = org_loc.split("/Organization/")[1].split("/")[0]
    assert stored["managingOrganization"]["reference"] == f"Organization/{org_id}"
    # a conditional reference that matches nothing fails the whole transaction
    bad = {**PATIENT, "managingOrganization": {"reference": "Organization?identifier=urn:npi|0"}}
    r = await client.post(
        "",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": bad, "request": {"method": "POST", "url": "Patient"}}],
        },
    )
    assert r.status_code == 412


async def test_transaction_order_and_duplicates(client: httpx.AsyncClient) -> None:
    await client.put("Patient/d1", json={**PATIENT, "id": "d1"})
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/d1"}},
            {"request": {"method": "DELETE", "url": "Patient/d1"}},
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 200
    entries = r.json()["entry"]
    # R4 order: the DELETE runs before the GET, which then sees the deletion
    assert entries[0]["response"]["status"] == "410"
    assert entries[1]["response"]["status"] == "204 No Content"
    dup = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {**PATIENT, "id": "x"}, "request": {"method": "PUT", "url": "Patient/x"}},
            {"resource": {**PATIENT, "id": "x"}, "request": {"method": "PUT", "url": "Patient/x"}},
        ],
    }
    assert (await client.post("", json=dup)).status_code == 400


async def test_batch_entries_are_independent(client: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {**PATIENT, "gender": "bogus"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient/missing"}},
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "batch-response"
    codes = [e["response"]["status"].split(" ")[0] for e in body["entry"]]
    assert codes == ["201", "422", "404"]
    assert body["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient")).json()["total"] == 1


async def test_bad_bundles(client: httpx.AsyncClient) -> None:
    r = await client.post("", json={"resourceType": "Bundle", "type": "collection"})
    assert r.status_code == 400
    r = await client.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": PATIENT}]}
    )
    assert r.status_code == 400
    r = await client.post("", json=PATIENT)
    assert r.status_code == 400
