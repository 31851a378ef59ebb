"""Server search bugs found by the generated and grid tests, kept as plain examples.

All four are fixed in the server and stay as regression tests. A bug found later and not yet
fixed is marked `xfail(strict=True)`: when it starts passing, remove the mark.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.search.conftest import Server

# On every storage engine (tests/storage/engines.py).
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.all_engines]
UCUM = "http://unitsofmeasure.org"


def _obs(oid: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": value, "unit": "kg", "system": UCUM, "code": "kg"},
    }


async def test_identifier_text_matches_type_text(server: Server) -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {
                "system": "http://hospital.example.org/mrn",
                "value": "12345",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ],
                    "text": "Medical record number",
                },
            }
        ],
    }
    await server.replace_all([patient, {"resourceType": "Patient", "id": "p2"}])
    assert await server.search("Patient", [("identifier:text", "medical")], 100) == ["p1"]


# The number section of R4 search defines gt/lt/ge/le against the exact value ("gt100: greater
# than exactly 100") but gives sa/eb no example; the prefix table's range column then applies:
# sa = "the range of the search value does not overlap with the range of the target value, and
# the range above the search value contains the range of the target value". `70` is [69.5, 70.5).
async def test_quantity_sa_uses_the_implicit_range(server: Server) -> None:
    await server.replace_all([_obs("in", 70.04), _obs("above", 70.6), _obs("below", 69.4)])
    assert await server.search("Observation", [("value-quantity", "sa70")], 100) == ["above"]


async def test_quantity_eb_uses_the_implicit_range(server: Server) -> None:
    await server.replace_all([_obs("in", 69.6), _obs("above", 70.6), _obs("below", 69.4)])
    assert await server.search("Observation", [("value-quantity", "eb70")], 100) == ["below"]


async def test_id_not_excludes_the_id(server: Server) -> None:
    await server.replace_all([{"resourceType": "Patient", "id": p} for p in ("p1", "p2")])
    r = await server.client.get("Patient", params={"_id:not": "p1"})
    ids = [e["resource"]["id"] for e in r.json().get("entry", ())]
    assert r.status_code == 400 or ids == ["p2"], (r.status_code, ids)


def _coded_obs(oid: str, patient: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def test_has_applies_its_inner_criterion(server: Server) -> None:
    """`_has:Observation:patient:code=zzz` once matched every patient with any Observation."""
    world: list[dict[str, Any]] = [{"resourceType": "Patient", "id": p} for p in ("p1", "p2")]
    world += [_coded_obs("o1", "p1", "8867-4"), _coded_obs("o2", "p2", "29463-7")]
    world[-1]["encounter"] = {"reference": "Encounter/e1"}
    world.append(
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "VR"},
            "subject": {"reference": "Patient/p2"},
        }
    )
    await server.replace_all(world)
    has = "_has:Observation:patient:code"
    assert await server.search("Patient", [(has, "zzz")], 100) == []
    assert await server.search("Patient", [(has, "8867-4")], 100) == ["p1"]
    r = await server.client.get("Patient", params={has: "zzz", "_summary": "count"})
    assert r.json()["total"] == 0
    nested = "_has:Encounter:subject:_has:Observation:encounter:code"
    assert await server.search("Patient", [(nested, "29463-7")], 100) == ["p2"]
    assert await server.search("Patient", [(nested, "8867-4")], 100) == []
    chain = "subject:Patient._has:Observation:patient:code"
    assert await server.search("Encounter", [(chain, "zzz")], 100) == []
