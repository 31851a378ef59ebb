"""Operation tests: the real app over HTTP against a real SQLite store per test."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import client

__all__ = ["client"]  # the API tests' fixture: the real app over HTTP, per test

LOINC = "http://loinc.org"
VITALS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    r = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": pid}], **extra}


def device(did: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": did,
        "status": "active",
        "patient": {"reference": f"Patient/{pid}"},
    }


def observation(
    oid: str,
    pid: str,
    when: str,
    codes: list[tuple[str, str]] | None = None,
    device_id: str | None = None,
    text: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    code: dict[str, Any] = {}
    if codes:
        code["coding"] = [{"system": s, "code": c} for s, c in codes]
    if text:
        code["text"] = text
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [VITALS],
        "code": code,
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": 70,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        **extra,
    }
    if device_id:
        obs["device"] = {"reference": f"Device/{device_id}"}
    return obs


def encounter(
    eid: str,
    pid: str,
    start: str,
    end: str | None,
    klass: str = "VR",
    status: str = "finished",
    **extra: Any,
) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{pid}"},
        "period": period,
        **extra,
    }
