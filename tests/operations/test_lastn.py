"""Observation/$lastn over HTTP: grouping by code (R4 rules), max, ties, per patient, errors."""

from __future__ import annotations

from typing import Any

import httpx

from tests.operations.conftest import observation, patient, put

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
HR = (LOINC, "8867-4")
WEIGHT = (LOINC, "29463-7")
SPO2 = (LOINC, "59408-5")


def ids(body: dict[str, Any]) -> list[str]:
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return [e["resource"]["id"] for e in body.get("entry", [])]


async def load(client: httpx.AsyncClient) -> None:
    for pid in ("a", "b"):
        await put(client, patient(pid))
    for day in range(1, 6):
        await put(
            client,
            observation(f"a-hr-{day}", "a", f"2026-10-0{day}T08:00:00Z", [HR, (MDC, "149546")]),
        )
        await put(client, observation(f"a-wt-{day}", "a", f"2026-10-0{day}T09:00:00Z", [WEIGHT]))
        await put(client, observation(f"b-hr-{day}", "b", f"2026-10-0{day}T07:00:00Z", [HR]))
    # Heart rate from an oximeter: another MDC code, same LOINC -> the same group (transitively).
    await put(client, observation("a-hr-oxi", "a", "2026-10-06T10:00:00Z", [(MDC, "149530"), HR]))
    await put(client, observation("a-spo2", "a", "2026-09-01T10:00:00Z", [SPO2]))


async def test_latest_per_code(client: httpx.AsyncClient) -> None:
    await load(client)
    r = await client.get("Observation/$lastn", params={"patient": "a", "category": "vital-signs"})
    assert r.status_code == 200, r.text
    assert sorted(ids(r.json())) == ["a-hr-oxi", "a-spo2", "a-wt-5"]
    r = await client.get(
        "Observation/$lastn", params={"patient": "Patient/a", "category": "vital-signs", "max": "3"}
    )
    got = ids(r.json())
    assert sorted(got) == sorted(
        ["a-hr-oxi", "a-hr-5", "a-hr-4", "a-wt-5", "a-wt-4", "a-wt-3", "a-spo2"]
    )
    # Newest first inside each group.
    assert got.index("a-hr-oxi") < got.index("a-hr-5") < got.index("a-hr-4")
    assert r.json()["total"] == 7


async def test_code_and_other_search_parameters_filter(client: httpx.AsyncClient) -> None:
    await load(client)
    q = {"subject": "Patient/a", "code": f"{LOINC}|29463-7", "max": "2"}
    assert ids((await client.get("Observation/$lastn", params=q)).json()) == ["a-wt-5", "a-wt-4"]
    q = {"patient": "a", "category": "vital-signs", "date": "le2026-10-03"}
    assert sorted(ids((await client.get("Observation/$lastn", params=q)).json())) == [
        "a-hr-3",
        "a-spo2",
        "a-wt-3",
    ]


async def test_per_patient(client: httpx.AsyncClient) -> None:
    await load(client)
    q = {"patient": "a,b", "code": f"{LOINC}|8867-4"}
    assert ids((await client.get("Observation/$lastn", params=q)).json()) == ["a-hr-oxi", "b-hr-5"]


async def test_codings_join_groups_transitively_and_text_groups(client: httpx.AsyncClient) -> None:
    await put(client, patient("t"))
    x, y = ("urn:x", "a"), ("urn:x", "b")
    await put(client, observation("only-a", "t", "2026-10-01T08:00:00Z", [x]))
    await put(client, observation("only-b", "t", "2026-10-02T08:00:00Z", [y]))
    await put(client, observation("a-and-b", "t", "2026-10-03T08:00:00Z", [x, y]))
    await put(client, observation("text-1", "t", "2026-10-04T08:00:00Z", text="Mood"))
    await put(client, observation("text-2", "t", "2026-10-05T08:00:00Z", text="Mood"))
    await put(client, observation("text-3", "t", "2026-10-06T08:00:00Z", text="mood"))
    r = await client.get("Observation/$lastn", params={"patient": "t", "category": "vital-signs"})
    assert sorted(ids(r.json())) == ["a-and-b", "text-2", "text-3"]


async def test_ties_are_all_returned(client: httpx.AsyncClient) -> None:
    await put(client, patient("tie"))
    await put(client, observation("t1", "tie", "2026-10-01T08:00:00Z", [HR]))
    await put(client, observation("t2", "tie", "2026-10-02T08:00:00Z", [HR]))
    await put(client, observation("t3", "tie", "2026-10-02T08:00:00Z", [HR]))
    r = await client.get("Observation/$lastn", params={"patient": "tie", "category": "vital-signs"})
    assert sorted(ids(r.json())) == ["t2", "t3"]


async def test_post_parameters(client: httpx.AsyncClient) -> None:
    await load(client)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueString": "b"},
            {"name": "category", "valueString": "vital-signs"},
            {"name": "max", "valueInteger": 2},
        ],
    }
    r = await client.post("Observation/$lastn", json=body)
    assert r.status_code == 200, r.text
    assert ids(r.json()) == ["b-hr-5", "b-hr-4"]


async def test_errors(client: httpx.AsyncClient) -> None:
    await load(client)
    for q in (
        {"category": "vital-signs"},
        {"patient": "a"},
        {"patient": "a", "category": "vital-signs", "max": "0"},
        {"patient": "a", "category": "vital-signs", "max": "two"},
        {"patient": "a", "category": "vital-signs", "nonsense": "1"},
        {"patient": "a", "category": "vital-signs", "date": "notadate"},
    ):
        r = await client.get("Observation/$lastn", params=q)
        assert r.status_code == 400, q
        assert r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient/$lastn", params={"patient": "a"})).status_code == 404
    empty = await client.get("Observation/$lastn", params={"patient": "nobody", "category": "x"})
    assert empty.status_code == 200 and ids(empty.json()) == []


async def test_elements_subset(client: httpx.AsyncClient) -> None:
    await load(client)
    q = {"patient": "b", "category": "vital-signs", "_elements": "effectiveDateTime"}
    (entry,) = (await client.get("Observation/$lastn", params=q)).json()["entry"]
    assert "effectiveDateTime" in entry["resource"] and "valueQuantity" not in entry["resource"]


async def test_max_is_exceeded_only_by_ties_as_r4_says(client: httpx.AsyncClient) -> None:
    """R4 Observation-lastn: "In case of a tie - when the effective times for >1 Observations are
    equal - both will be returned. Therefore, more Observations may be returned than is specified
    in max." Three weights at one effectiveDateTime with max=1: all three, in a fixed order."""
    weight = [(LOINC, "29463-7")]
    await put(client, patient("w"))
    await put(client, observation("w-old", "w", "2026-10-01T08:00:00Z", weight))
    for oid in ("w-b", "w-c", "w-a"):  # written in this order: lastUpdated w-b < w-c < w-a
        await put(client, observation(oid, "w", "2026-10-02T08:00:00Z", weight))
    q = {"patient": "w", "code": f"{LOINC}|29463-7", "max": "1"}
    body = (await client.get("Observation/$lastn", params=q)).json()
    assert ids(body) == ["w-a", "w-c", "w-b"] and body["total"] == 3
    await put(client, observation("w-new", "w", "2026-10-03T08:00:00Z", weight))
    body = (await client.get("Observation/$lastn", params=q)).json()
    assert ids(body) == ["w-new"] and body["total"] == 1  # no tie: exactly max
    body = (await client.get("Observation/$lastn", params={**q, "max": "2"})).json()
    assert ids(body) == ["w-new", "w-a", "w-c", "w-b"]  # the 2nd is tied with two more
