"""Patient- and Group-level exports: the Patient compartments of the group's (or all) patients,
using the demo data's Group (seed_data/90-groups.json)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fhir_server.fhir import jsonio
from fhir_server.fhir.compartments import compartment_resource_types
from tests.export.conftest import (
    ASYNC,
    export_all,
    export_settings,
    ids,
    observation,
    patient,
    post_batch,
    running,
)

SEED_GROUP = Path(__file__).resolve().parents[2] / "seed_data" / "90-groups.json"


def _group() -> dict[str, Any]:
    bundle = jsonio.loads(SEED_GROUP.read_bytes())
    [group] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "group-rpm-patients"
    ]
    assert isinstance(group, dict)
    return group


def _refs(resource: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if isinstance(v.get("reference"), str):
                found.add(v["reference"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(resource)
    return found


def _small_seed(tmp_path: Path, patients: int) -> Path:
    """The demo practice, its first patients, and the seed Groups (a quick start for a test)."""
    seed = tmp_path / "seed"
    seed.mkdir()
    names = ["00-practice.json", *(f"10-patient-{i:02d}.json" for i in range(1, patients + 1))]
    for name in [*names, SEED_GROUP.name]:
        shutil.copy(SEED_GROUP.parent / name, seed / name)
    return seed


async def test_group_export_of_the_seed_group(tmp_path: Path) -> None:
    group = _group()
    loaded = {f"patient-{i:02d}" for i in range(1, 4)}
    members = {m["entity"]["reference"].split("/")[1] for m in group["member"]} & loaded
    assert len(members) >= 3
    settings = export_settings(tmp_path, seed=True, seed_dir=_small_seed(tmp_path, 3))
    async with running(settings) as (_, client):
        manifest, data = await export_all(client, f"Group/{group['id']}/$export")
        assert manifest["request"].endswith(f"/Group/{group['id']}/$export")
        assert ids(data["Patient"]) == members
        allowed = set(compartment_resource_types("Patient"))
        assert set(data) <= allowed
        member_refs = {f"Patient/{m}" for m in members}
        for rtype, resources in data.items():
            if rtype == "Patient":
                continue
            for r in resources:
                assert _refs(r) & member_refs, f"{rtype}/{r['id']} is outside the group"
        # Every Observation of a member is there: compare with a search.
        subjects = ",".join(sorted(member_refs))
        resp = await client.get("Observation", params={"subject": subjects, "_summary": "count"})
        assert len(data["Observation"]) == resp.json()["total"] > 0
        assert len({o["id"] for o in data["Observation"]}) == len(data["Observation"])

        # The patient parameter narrows the group; _type keeps only the compartment types asked.
        one = sorted(members)[0]
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueReference": {"reference": f"Patient/{one}"}},
                {"name": "_type", "valueString": "Patient,Observation"},
            ],
        }
        _, data = await export_all(client, f"Group/{group['id']}/$export", method="POST", json=body)
        assert ids(data["Patient"]) == {one}
        assert {o["subject"]["reference"] for o in data["Observation"]} == {f"Patient/{one}"}

        resp = await client.get("Group/nope/$export", headers=ASYNC)
        assert resp.status_code == 404


async def test_patient_export_is_every_patient_compartment(tmp_path: Path) -> None:
    async with running(export_settings(tmp_path)) as (_, client):
        device_obs = observation("dev", "x")
        device_obs["subject"] = {"reference": "Device/d1"}
        await post_batch(
            client,
            [
                patient("p1"),
                patient("p2"),
                observation("o1", "p1"),
                observation("o2", "p2"),
                device_obs,
                {"resourceType": "Device", "id": "d1"},
                {"resourceType": "Organization", "id": "org1", "name": "Clinic"},
            ],
        )
        params = {"_type": "Patient,Observation,Organization"}
        r = await client.get("Patient/$export", params={"_type": "Organization"}, headers=ASYNC)
        assert r.status_code == 400  # only types outside the compartment
        _, data = await export_all(client, "Patient/$export", params=params)
        assert set(data) == {"Patient", "Observation"}  # Organization: not in the compartment
        assert ids(data["Patient"]) == {"p1", "p2"}
        assert ids(data["Observation"]) == {"o1", "o2"}  # not the Device's
