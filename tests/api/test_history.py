"""history at instance, type and system level, with _since, _at and paging."""

from __future__ import annotations

import asyncio

import httpx
import pytest

# Run on every storage engine (tests/storage/engines.py).
pytestmark = pytest.mark.all_engines

PATIENT = {"resourceType": "Patient", "gender": "male"}


async def test_type_and_system_history_with_since_and_paging(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.put(f"Patient/h{i}", json={**PATIENT, "id": f"h{i}"})
    marker = (await client.get("Patient/h4")).json()["meta"]["lastUpdated"]
    await asyncio.sleep(0.01)
    await client.put("Patient/h0", json={**PATIENT, "id": "h0", "gender": "female"})
    await client.post(
        "Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
    )
    hist = (await client.get("Patient/_history")).json()
    assert len(hist["entry"]) == 6
    since = (await client.get("Patient/_history", params={"_since": marker})).json()
    assert {e["resource"]["id"] for e in since["entry"]} == {"h4", "h0"}
    system = (await client.get("_history")).json()
    assert len(system["entry"]) == 7
    # newest first; page through with _count=2 and collect every version exactly once
    seen: list[str] = []
    page = (await client.get("_history", params={"_count": "2"})).json()
    while True:
        seen += [
            f"{e['resource']['id']}/{e['resource']['meta']['versionId']}" for e in page["entry"]
        ]
        nxt = [ln["url"] for ln in page.get("link", []) if ln["relation"] == "next"]
        if not nxt:
            break
        page = (await client.get(nxt[0])).json()
    assert len(seen) == 7
    assert len(set(seen)) == 7


async def test_history_at(client: httpx.AsyncClient) -> None:
    await client.put("Patient/a1", json={**PATIENT, "id": "a1"})
    v1_time = (await client.get("Patient/a1")).json()["meta"]["lastUpdated"]
    await asyncio.sleep(0.01)
    await client.put("Patient/a1", json={**PATIENT, "id": "a1", "gender": "female"})
    at = (await client.get("Patient/a1/_history", params={"_at": v1_time})).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["1"]


async def test_history_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("Patient/none/_history")).status_code == 404
    r = await client.get("Patient/_history", params={"_since": "yesterday"})
    assert r.status_code == 400
    r = await client.get("_history", params={"_page": "forged.token"})
    assert r.status_code == 400
