"""The search minimum of the REST core: token, reference, date, string, _id, _lastUpdated,
_count and next links, strict and lenient handling."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

# Run on every storage engine (tests/storage/engines.py).
pytestmark = pytest.mark.all_engines

VR = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC = "http://loinc.org"


def obs(id: str, patient: str, code: str, when: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "device": {"reference": f"Device/dev-{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


async def _load(client: httpx.AsyncClient) -> None:
    for pid, family in (("p1", "Smith"), ("p2", "Smythe"), ("p3", "Jones")):
        r = await client.put(
            f"Patient/{pid}",
            json={"resourceType": "Patient", "id": pid, "name": [{"family": family}]},
        )
        assert r.status_code == 201, r.text
        r = await client.put(
            f"Device/dev-{pid}",
            json={
                "resourceType": "Device",
                "id": f"dev-{pid}",
                "patient": {"reference": f"Patient/{pid}"},
            },
        )
        assert r.status_code == 201, r.text
    rows = [
        ("o1", "p1", "8867-4", "2024-03-01T10:00:00Z", 70),
        ("o2", "p1", "8867-4", "2024-03-15T10:00:00Z", 80),
        ("o3", "p1", "59408-5", "2024-03-15T10:00:00Z", 97),
        ("o4", "p2", "8867-4", "2024-04-02T10:00:00Z", 90),
        ("o5", "p3", "8867-4", "2024-02-28", 60),
    ]
    for row in rows:
        r = await client.put(f"Observation/{row[0]}", json=obs(*row))
        assert r.status_code == 201, r.text
    for eid, cls, pid in (("e1", "VR", "p1"), ("e2", "AMB", "p1"), ("e3", "VR", "p2")):
        r = await client.put(
            f"Encounter/{eid}",
            json={
                "resourceType": "Encounter",
                "id": eid,
                "status": "finished",
                "class": {"system": VR, "code": cls},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
        assert r.status_code == 201, r.text


async def _ids(client: httpx.AsyncClient, path: str, **params: str) -> set[str]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return {e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"}


async def test_token_reference_date(client: httpx.AsyncClient) -> None:
    await _load(client)
    assert await _ids(client, "Observation", patient="p1", code=f"{LOINC}|8867-4") == {"o1", "o2"}
    assert await _ids(
        client, "Observation", patient="Patient/p1", code="8867-4", date="ge2024-03-10"
    ) == {"o2"}
    assert await _ids(client, "Observation", date="2024-03") == {"o1", "o2", "o3"}
    assert await _ids(client, "Observation", date="lt2024-03-01") == {"o5"}
    assert await _ids(client, "Observation", subject="Patient/p2") == {"o4"}
    assert await _ids(client, "Observation", code="8867-4,59408-5", patient="p1") == {
        "o1",
        "o2",
        "o3",
    }
    assert await _ids(client, "Encounter", **{"class": f"{VR}|VR"}) == {"e1", "e3"}
    assert await _ids(client, "Device", patient="p2") == {"dev-p2"}
    assert await _ids(client, "Patient", name="smi") == {"p1"}
    assert await _ids(client, "Patient", family="sm") == {"p1", "p2"}
    assert await _ids(client, "Patient", _id="p1,p3") == {"p1", "p3"}
    assert await _ids(client, "Observation", **{"value-quantity": "gt85"}) == {"o4", "o3"}


async def test_paging_next_links_return_every_match_once(client: httpx.AsyncClient) -> None:
    await _load(client)
    r = await client.get("Observation", params={"_count": "2"})
    body = r.json()
    seen = [e["resource"]["id"] for e in body["entry"]]
    while nxt := [ln["url"] for ln in body["link"] if ln["relation"] == "next"]:
        body = (await client.get(nxt[0])).json()
        seen += [e["resource"]["id"] for e in body["entry"]]
    assert sorted(seen) == ["o1", "o2", "o3", "o4", "o5"]


async def test_sort_and_lastupdated(client: httpx.AsyncClient) -> None:
    await _load(client)
    r = await client.get(
        "Observation", params={"patient": "p1", "_sort": "-date", "code": "8867-4"}
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["o2", "o1"]
    assert len(await _ids(client, "Observation", _lastUpdated="gt2000-01-01")) == 5


async def test_unknown_parameter_strict_and_lenient(client: httpx.AsyncClient) -> None:
    await _load(client)
    r = await client.get("Observation", params={"bogus": "1"})
    assert r.status_code == 400
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert "bogus" in oo["issue"][0]["diagnostics"]
    r = await client.get(
        "Observation",
        params={"bogus": "1", "patient": "p2"},
        headers={"Prefer": "handling=lenient"},
    )
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert {e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"} == {"o4"}
    outcome = [e for e in entries if e["search"]["mode"] == "outcome"]
    assert outcome and "bogus" in outcome[0]["resource"]["issue"][0]["diagnostics"]


async def test_bad_values_are_400(client: httpx.AsyncClient) -> None:
    for params in (
        {"date": "2024-13-99"},
        {"date": "xx2024"},
        {"value-quantity": "abc"},
        {"code:bogus": "x"},
        {"_count": "-1"},
        {"_sort": "nope"},
    ):
        r = await client.get("Observation", params=params)
        assert r.status_code == 400, params
        assert r.json()["resourceType"] == "OperationOutcome"


async def test_post_search_and_compartment(client: httpx.AsyncClient) -> None:
    await _load(client)
    r = await client.post("Observation/_search", data={"patient": "p2"})
    assert r.status_code == 200
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {"o4"}
    assert await _ids(client, "Patient/p1/Observation", code="8867-4") == {"o1", "o2"}
    assert await _ids(client, "Patient/p1/Encounter") == {"e1", "e2"}


async def test_include_and_revinclude(client: httpx.AsyncClient) -> None:
    await _load(client)
    r = await client.get("Observation", params={"_id": "o4", "_include": "Observation:subject"})
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in r.json()["entry"]}
    assert modes == {("Observation", "match"), ("Patient", "include")}
    r = await client.get("Patient", params={"_id": "p2", "_revinclude": "Device:patient"})
    modes = {(e["resource"]["id"], e["search"]["mode"]) for e in r.json()["entry"]}
    assert modes == {("p2", "match"), ("dev-p2", "include")}


async def test_summary_count_and_elements(client: httpx.AsyncClient) -> None:
    await _load(client)
    r = (await client.get("Observation", params={"_summary": "count"})).json()
    assert r["total"] == 5 and "entry" not in r
    r = (await client.get("Observation", params={"_id": "o1", "_elements": "code"})).json()
    res = r["entry"][0]["resource"]
    assert "code" in res and "valueQuantity" not in res
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])


async def test_previous_links_walk_back(client: httpx.AsyncClient) -> None:
    await _load(client)
    for sort in (None, "-date", "date,_id"):
        params = {"_count": "2", **({"_sort": sort} if sort else {})}
        body = (await client.get("Observation", params=params)).json()
        assert not [ln for ln in body["link"] if ln["relation"] == "previous"]
        pages = [[e["resource"]["id"] for e in body["entry"]]]
        while nxt := [ln["url"] for ln in body["link"] if ln["relation"] == "next"]:
            body = (await client.get(nxt[0])).json()
            pages.append([e["resource"]["id"] for e in body["entry"]])
        back = [[e["resource"]["id"] for e in body["entry"]]]
        while prev := [ln["url"] for ln in body["link"] if ln["relation"] == "previous"]:
            body = (await client.get(prev[0])).json()
            back.append([e["resource"]["id"] for e in body["entry"]])
        assert back == pages[::-1], sort
        assert sorted(i for p in pages for i in p) == ["o1", "o2", "o3", "o4", "o5"]


async def test_total_accurate_counts_matches_not_rows(client: httpx.AsyncClient) -> None:
    await _load(client)
    body = (
        await client.get(
            "Observation", params={"code": "8867-4", "_total": "accurate", "_count": "1"}
        )
    ).json()
    assert body["total"] == 4
    body = (
        await client.get(
            "Observation", params={"patient": "p1", "_total": "accurate", "_count": "1"}
        )
    ).json()
    assert body["total"] == 3
    body = (
        await client.get(
            "Observation",
            params={"patient": "p1", "code": "8867-4", "_total": "accurate", "_count": "1"},
        )
    ).json()
    assert body["total"] == 2
