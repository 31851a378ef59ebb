"""Profiles over HTTP: $validate at type and instance level, profile claims on write, the
server's conformance resources served read-only, and require_rpm_profiles."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.profiles.conftest import (
    CORE_SD,
    MDC,
    RPM_DEVICE,
    RPM_OBSERVATION,
    VIRTUAL_VISIT,
    bp_observation,
    rpm_device,
    virtual_visit,
)

BP = f"{CORE_SD}/bp"


def _errors(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    assert outcome["resourceType"] == "OperationOutcome"
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def _paths(outcome: dict[str, Any]) -> set[str]:
    return {p for i in _errors(outcome) for p in i.get("expression", [])}


def _bad_bp() -> dict[str, Any]:
    obs = bp_observation()
    del obs["component"][0]["valueQuantity"]
    return obs


# --- $validate ---------------------------------------------------------------------------------
async def test_validate_type_level_body_and_query_profile(client: httpx.AsyncClient) -> None:
    r = await client.post("Observation/$validate", json=bp_observation())
    assert r.status_code == 200
    assert r.json()["issue"] == [
        {"severity": "information", "code": "informational", "diagnostics": "All OK"}
    ]
    r = await client.post("Observation/$validate", params={"profile": BP}, json=_bad_bp())
    assert r.status_code == 200  # invalid, still 200 with the outcome
    assert "Observation.component[0]" in _paths(r.json())


async def test_validate_type_level_parameters(client: httpx.AsyncClient) -> None:
    obs = bp_observation()
    del obs["device"]
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": obs},
            {"name": "profile", "valueUri": RPM_OBSERVATION},
            {"name": "mode", "valueCode": "create"},
        ],
    }
    r = await client.post("Observation/$validate", json=params)
    assert r.status_code == 200
    assert _paths(r.json()) == {"Observation.device"}
    assert RPM_OBSERVATION in _errors(r.json())[0]["diagnostics"]


async def test_validate_uses_claimed_profiles_and_base_rules(client: httpx.AsyncClient) -> None:
    enc = virtual_visit()
    enc["class"]["code"] = "AMB"
    enc["status"] = "done"  # not an Encounter status at all: the base validation says so
    r = await client.post("Encounter/$validate", json=enc)
    assert r.status_code == 200
    assert {"Encounter.class", "Encounter.status"} <= _paths(r.json())


async def test_validate_instance_level_stored_resource(client: httpx.AsyncClient) -> None:
    obs = bp_observation()
    del obs["device"]
    assert (await client.put("Observation/bp1", json=obs)).status_code == 201
    r = await client.get("Observation/bp1/$validate")
    assert r.json()["issue"][0]["diagnostics"] == "All OK"
    r = await client.get("Observation/bp1/$validate", params={"profile": RPM_OBSERVATION})
    assert r.status_code == 200
    assert _paths(r.json()) == {"Observation.device"}
    r = await client.get("Observation/nope/$validate")
    assert r.status_code == 404


async def test_validate_instance_level_parameters(client: httpx.AsyncClient) -> None:
    params: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": rpm_device()},
            {"name": "profile", "valueCanonical": RPM_DEVICE},
            {"name": "mode", "valueCode": "update"},
        ],
    }
    r = await client.post("Device/d1/$validate", json=params)
    assert r.status_code == 200 and _errors(r.json()) == []
    r = await client.post("Device/other/$validate", json=params)
    assert _paths(r.json()) == {"Device.id"}
    bad = rpm_device()
    bad["type"] = {"coding": [{"system": MDC, "code": "65573"}]}
    params["parameter"][0]["resource"] = bad
    r = await client.post("Device/d1/$validate", json=params)
    assert r.status_code == 200 and _paths(r.json()) == {"Device.type"}


async def test_validate_request_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("Observation/$validate")).status_code == 400  # nothing to validate
    r = await client.post("Observation/$validate", json=rpm_device())
    assert r.status_code == 400  # another type
    r = await client.post("Observation/$validate", params={"mode": "bogus"}, json=_bad_bp())
    assert r.status_code == 400
    r = await client.post(
        "Observation/$validate", params={"profile": "http://example.org/nope"}, json=_bad_bp()
    )
    assert r.status_code == 200
    assert _errors(r.json())[0]["code"] == "not-supported"


async def test_validate_delete_mode(client: httpx.AsyncClient) -> None:
    r = await client.get("StructureDefinition/rpm-observation/$validate?mode=delete")
    assert r.status_code == 200 and _errors(r.json())
    r = await client.get("Patient/p1/$validate?mode=delete")
    assert r.status_code == 200 and not _errors(r.json())


async def test_validate_is_in_the_capability_statement(client: httpx.AsyncClient) -> None:
    cs = (await client.get("metadata")).json()
    obs = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Observation")
    assert any(op["name"] == "validate" for op in obs.get("operation", []))


# --- profile claims on write --------------------------------------------------------------------
async def test_write_claiming_a_known_profile_is_validated(client: httpx.AsyncClient) -> None:
    obs = _bad_bp()
    obs["meta"] = {"profile": [BP]}
    r = await client.put("Observation/bp1", json=obs)
    assert r.status_code == 422
    assert "Observation.component[0]" in _paths(r.json())
    obs["meta"] = {"profile": ["http://example.org/StructureDefinition/unknown"]}
    assert (await client.put("Observation/bp1", json=obs)).status_code == 201  # unknown: ignored
    good = bp_observation()
    good["meta"] = {"profile": [BP, RPM_OBSERVATION]}
    assert (await client.put("Observation/bp1", json=good)).status_code == 200
    enc = virtual_visit()
    del enc["subject"]
    r = await client.post("Encounter", json=enc)
    assert r.status_code == 422 and _paths(r.json()) == {"Encounter.subject"}
    assert (await client.post("Encounter", json=virtual_visit())).status_code == 201


async def test_transaction_entries_are_checked(client: httpx.AsyncClient) -> None:
    enc = virtual_visit()
    enc["participant"] = []
    del enc["participant"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": rpm_device(), "request": {"method": "PUT", "url": "Device/d1"}},
            {"resource": enc, "request": {"method": "PUT", "url": "Encounter/e1"}},
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 422
    assert (await client.get("Device/d1")).status_code == 404  # all or nothing


# --- the server's conformance resources ---------------------------------------------------------
async def test_conformance_resources_are_served(client: httpx.AsyncClient) -> None:
    r = await client.get("StructureDefinition/rpm-observation")
    assert r.status_code == 200 and r.json()["url"] == RPM_OBSERVATION
    # lastUpdated: when this server loaded them, not the epoch
    assert r.json()["meta"]["lastUpdated"] >= "2026"
    assert "1970" not in r.headers["last-modified"]
    r = await client.get("StructureDefinition", params={"url": VIRTUAL_VISIT})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["virtual-visit"]
    r = await client.get("StructureDefinition", params={"type": "Observation"})
    assert "rpm-observation" in {e["resource"]["id"] for e in r.json()["entry"]}
    for path in (
        "ValueSet/rpm-device-types",
        "ValueSet/virtual-modality",
        "CodeSystem/virtual-modality",
        "SearchParameter/encounter-modality",
        "StructureDefinition/virtual-modality/_history/1",
    ):
        assert (await client.get(path)).status_code == 200, path
    r = await client.get("SearchParameter", params={"base": "Encounter", "code": "modality"})
    assert r.json()["total"] == 1 if "total" in r.json() else len(r.json()["entry"]) == 1
    # the data store itself holds no conformance resource: system history stays empty
    assert (await client.get("_history")).json().get("entry", []) == []


async def test_conformance_resources_are_read_only(client: httpx.AsyncClient) -> None:
    sd = (await client.get("StructureDefinition/rpm-observation")).json()
    r = await client.put("StructureDefinition/rpm-observation", json=sd)
    assert r.status_code == 405
    assert "read-only" in r.json()["issue"][0]["diagnostics"]
    assert (await client.delete("ValueSet/rpm-device-types")).status_code == 405
    patch = [{"op": "replace", "path": "/status", "value": "retired"}]
    r = await client.patch(
        "CodeSystem/virtual-modality",
        content=httpx.Response(200, json=patch).content,
        headers={"content-type": "application/json-patch+json"},
    )
    assert r.status_code == 405
    after = (await client.get("StructureDefinition/rpm-observation")).json()
    assert after["meta"]["versionId"] == "1"


async def test_stored_profile_is_usable_by_validate(client: httpx.AsyncClient) -> None:
    sd = (await client.get("StructureDefinition/rpm-device")).json()
    mine = {k: v for k, v in sd.items() if k not in ("id", "meta", "url", "name", "differential")}
    mine.update(
        {
            "url": "http://example.org/StructureDefinition/serial-device",
            "name": "SerialDevice",
            "differential": {
                "element": [{"id": "Device.serialNumber", "path": "Device.serialNumber", "min": 1}]
            },
        }
    )
    assert (await client.post("StructureDefinition", json=mine)).status_code == 201
    r = await client.post("Device/$validate", params={"profile": mine["url"]}, json=rpm_device())
    assert _paths(r.json()) == {"Device.serialNumber"}


# --- require_rpm_profiles -----------------------------------------------------------------------
async def test_require_rpm_profiles(strict_client: httpx.AsyncClient) -> None:
    obs = bp_observation()
    obs["subject"] = {"reference": "Group/g1"}  # an RPM reading is about a patient (or device)
    r = await strict_client.put("Observation/bp1", json=obs)
    assert r.status_code == 422 and _paths(r.json()) == {"Observation.subject"}
    assert RPM_OBSERVATION in r.json()["issue"][0]["diagnostics"]
    del obs["device"]  # no device: not an RPM reading, the setting does not apply
    assert (await strict_client.put("Observation/bp1", json=obs)).status_code == 201
    assert (
        await strict_client.put("Observation/bp2", json={**bp_observation(), "id": "bp2"})
    ).status_code == 201


async def test_require_rpm_profiles_off_by_default(client: httpx.AsyncClient) -> None:
    obs = bp_observation()
    obs["subject"] = {"reference": "Group/g1"}
    assert (await client.put("Observation/bp1", json=obs)).status_code == 201


def test_require_rpm_profiles_setting_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fhir_server.settings import Settings

    assert Settings().require_rpm_profiles is False
    monkeypatch.setenv("FHIR_SERVER_REQUIRE_RPM_PROFILES", "true")
    assert Settings().require_rpm_profiles is True


async def test_vital_sign_reading_without_category_is_not_an_rpm_reading(
    strict_client: httpx.AsyncClient,
) -> None:
    """Heart rate (LOINC 8867-4) with UCUM value, subject, effective and device but no category."""
    obs = bp_observation()
    del obs["component"], obs["category"]
    obs["code"] = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    obs["valueQuantity"] = {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                            "code": "/min"}  # fmt: skip
    r = await strict_client.post("Observation/$validate", params={"profile": RPM_OBSERVATION},
                                 json=obs)  # fmt: skip
    assert r.status_code == 200 and _errors(r.json())
    assert "rpm-4" in _errors(r.json())[0]["diagnostics"]
    r = await strict_client.post("Observation", json=obs)
    assert r.status_code == 422, r.text
    obs["category"] = bp_observation()["category"]
    assert (await strict_client.post("Observation", json=obs)).status_code == 201


async def test_capability_statement_lists_the_servers_profiles(client: httpx.AsyncClient) -> None:
    """supportedProfile: the server's own profiles (profiles/) on the types they constrain."""
    cs = (await client.get("metadata")).json()
    by_type = {x["type"]: x for x in cs["rest"][0]["resource"]}
    assert by_type["Observation"]["supportedProfile"] == [RPM_OBSERVATION]
    assert by_type["Device"]["supportedProfile"] == [RPM_DEVICE]
    assert by_type["Encounter"]["supportedProfile"] == [VIRTUAL_VISIT]
    assert "supportedProfile" not in by_type["Patient"]
    assert "Extension" not in by_type


async def test_a_stored_profile_may_not_take_a_server_profiles_url(
    client: httpx.AsyncClient,
) -> None:
    served = (await client.get("StructureDefinition/rpm-observation")).json()
    copy = {k: v for k, v in served.items() if k not in ("id", "meta")}
    r = await client.post("StructureDefinition", json=copy)
    assert r.status_code == 409, r.text
    assert r.json()["issue"][0]["expression"] == ["StructureDefinition.url"]
    copy["url"] = "https://example.org/fhir/StructureDefinition/my-rpm-observation"
    assert (await client.post("StructureDefinition", json=copy)).status_code == 201
