"""One rule at a time: each broken rule is reported at the element path it concerns."""

from __future__ import annotations

from typing import Any

from fhir_server.fhir.profiles import ProfileRegistry
from tests.profiles.conftest import (
    CORE_SD,
    LOINC,
    MDC,
    MODALITY,
    MODALITY_SYSTEM,
    RPM_DEVICE,
    RPM_OBSERVATION,
    UCUM,
    VIRTUAL_VISIT,
    bp_observation,
    errors,
    paths,
    quantity,
    rpm_device,
    virtual_visit,
)

BP = f"{CORE_SD}/bp"
SNOMED = "http://snomed.info/sct"
VITALSIGNS = f"{CORE_SD}/vitalsigns"


def test_conforming_resources_pass(registry: ProfileRegistry) -> None:
    for url in (RPM_OBSERVATION, VITALSIGNS, BP):
        assert registry.validate(bp_observation(), url) == []
    assert registry.validate(rpm_device(), RPM_DEVICE) == []
    assert registry.validate(virtual_visit(), VIRTUAL_VISIT) == []


def test_min_cardinality(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    del obs["device"], obs["subject"]
    issues = registry.validate(obs, RPM_OBSERVATION)
    assert paths(issues) == {"Observation.device", "Observation.subject"}
    assert "minimum required = 1" in errors(issues)[0].diagnostics
    enc = virtual_visit()
    del enc["participant"]
    assert "Encounter.participant" in paths(registry.validate(enc, VIRTUAL_VISIT))


def test_min_cardinality_of_a_choice_element(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    del obs["effectiveDateTime"]
    assert paths(registry.validate(obs, RPM_OBSERVATION)) == {"Observation.effective[x]"}


def test_max_cardinality(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    obs["valueQuantity"] = quantity(120, "mm[Hg]")  # bp: Observation.valueQuantity 0..0
    issues = registry.validate(obs, BP)
    assert paths(issues) == {"Observation.valueQuantity"}
    assert "maximum allowed = 0" in errors(issues)[0].diagnostics


def test_fixed_value(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    del obs["component"]
    obs["code"] = {"coding": [{"system": LOINC, "code": "8867-4"}]}
    obs["valueQuantity"] = {"value": 70, "system": "http://example.org/units", "code": "/min"}
    assert "Observation.valueQuantity.system" in paths(registry.validate(obs, RPM_OBSERVATION))


def test_fixed_value_inside_a_slice(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    obs["component"][0]["valueQuantity"]["code"] = "kPa"
    assert paths(registry.validate(obs, BP)) == {
        "Observation.component[0].valueQuantity.code",  # bp: fixedCode mm[Hg]
        "Observation.component[0].valueQuantity",  # vitalsigns: required UCUM vital-sign units
    }


def test_pattern_value(registry: ProfileRegistry) -> None:
    enc = virtual_visit()
    enc["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    issues = registry.validate(enc, VIRTUAL_VISIT)
    assert paths(issues) == {"Encounter.class"}


def test_choice_type_not_allowed(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    del obs["effectiveDateTime"]
    obs["effectiveTiming"] = {"event": ["2026-10-14T08:30:00-04:00"]}
    issues = registry.validate(obs, RPM_OBSERVATION)
    assert "Observation.effectiveTiming" in paths(issues)
    enc = virtual_visit()
    enc["extension"][0] = {"url": MODALITY, "valueString": "video"}
    assert "Encounter.extension[0].valueString" in paths(registry.validate(enc, VIRTUAL_VISIT))


def test_reference_target(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    obs["subject"] = {"reference": "Group/g1"}
    issues = registry.validate(obs, RPM_OBSERVATION)
    assert paths(issues) == {"Observation.subject"}
    assert "Reference to Group is not allowed" in errors(issues)[0].diagnostics
    device = rpm_device()
    device["patient"] = {"reference": "http://other.example/fhir/Location/l1"}
    assert paths(registry.validate(device, RPM_DEVICE)) == {"Device.patient"}


def test_required_binding(registry: ProfileRegistry) -> None:
    device = rpm_device()
    device["type"] = {"coding": [{"system": MDC, "code": "65573"}]}  # "simple PHD": no kind
    issues = registry.validate(device, RPM_DEVICE)
    assert paths(issues) == {"Device.type"}
    assert "rpm-device-types" in errors(issues)[0].diagnostics
    enc = virtual_visit()
    enc["extension"][0]["valueCoding"] = {"system": MODALITY_SYSTEM, "code": "hologram"}
    assert paths(registry.validate(enc, VIRTUAL_VISIT)) == {"Encounter.extension[0].valueCoding"}


def test_required_binding_of_a_core_value_set(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    obs["component"][1]["valueQuantity"] = quantity(82, "mm[Hg]x")
    issues = registry.validate(obs, f"{CORE_SD}/vitalsigns")
    assert paths(issues) == {"Observation.component[1].valueQuantity"}


def test_extensible_binding_is_a_warning(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    del obs["component"]
    obs["code"] = {"coding": [{"system": LOINC, "code": "2339-0"}]}  # glucose: no vital sign
    obs["valueQuantity"] = quantity(98, "mg/dL")
    issues = registry.validate(obs, VITALSIGNS)
    assert errors(issues) == []
    assert [(i.severity, i.expression) for i in issues] == [("warning", ["Observation.code"])]


def test_slice_cardinality(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    del obs["component"][0]  # no systolic component
    issues = registry.validate(obs, BP)
    assert "Observation.component" in paths(issues)
    assert any("slice 'SystolicBP'" in i.diagnostics for i in errors(issues))


def test_slice_of_a_category(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    obs["category"][0]["coding"][0]["code"] = "laboratory"
    issues = registry.validate(obs, VITALSIGNS)
    assert "Observation.category" in paths(issues)
    assert any("slice 'VSCat'" in i.diagnostics for i in errors(issues))


def test_closed_slicing(registry: ProfileRegistry) -> None:
    enc = virtual_visit()
    enc["extension"][1]["extension"].append({"url": "password", "valueString": "hunter2"})
    issues = registry.validate(enc, VIRTUAL_VISIT)
    assert paths(issues) == {"Encounter.extension[1].extension[3]"}
    assert "matches no slice" in errors(issues)[0].diagnostics


def test_extension_profile_content(registry: ProfileRegistry) -> None:
    enc = virtual_visit()
    enc["extension"][1]["extension"][2] = {"url": "sessionKey", "valueInteger": 123}
    assert "Encounter.extension[1].extension[2].valueInteger" in paths(
        registry.validate(enc, VIRTUAL_VISIT)
    )


def test_invariants(registry: ProfileRegistry) -> None:
    enc = virtual_visit()
    del enc["period"]["end"]  # finished without an end: vv-1
    issues = registry.validate(enc, VIRTUAL_VISIT)
    assert paths(issues) == {"Encounter"}
    assert "vv-1" in errors(issues)[0].diagnostics
    enc = virtual_visit()
    enc["participant"] = [{"individual": {"reference": "RelatedPerson/r1"}}]  # vv-2
    assert any("vv-2" in i.diagnostics for i in errors(registry.validate(enc, VIRTUAL_VISIT)))
    obs = bp_observation()
    del obs["component"][0]["valueQuantity"]  # vs-3: a component needs a value
    issues = registry.validate(obs, RPM_OBSERVATION)
    assert paths(issues) == {"Observation.component[0]"}
    assert "vs-3" in errors(issues)[0].diagnostics
    obs = bp_observation()
    obs["code"]["coding"] = [{"system": MDC, "code": "150020"}]  # rpm-1: vital sign, no LOINC
    issues = registry.validate(obs, RPM_OBSERVATION)
    assert any("rpm-1" in i.diagnostics for i in errors(issues))
    assert paths(issues) == {"Observation"}


def test_profile_of_another_type(registry: ProfileRegistry) -> None:
    issues = registry.validate(rpm_device(), RPM_OBSERVATION)
    assert paths(issues) == {"Device"}


def test_claimed_profiles_only_known_ones(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    obs["meta"] = {"profile": ["http://example.org/unknown", f"{BP}|4.0.1"]}
    assert registry.claimed(obs) == [f"{BP}|4.0.1"]
    del obs["component"][0]
    assert errors(registry.claimed_issues(obs))


def test_unit_system_of_a_component(registry: ProfileRegistry) -> None:
    obs = bp_observation()
    obs["component"][0]["valueQuantity"]["system"] = "http://example.org/units"
    issues = registry.validate(obs, RPM_OBSERVATION)
    assert any("rpm-2" in i.diagnostics or "rpm-3" in i.diagnostics for i in errors(issues))
    assert "Observation.component[0]" in paths(issues)
    assert UCUM not in str(paths(issues))


def test_server_conformance_resources_are_valid_r4() -> None:
    from fhir_server.conformance import server_resources
    from fhir_server.fhir.validation import resource_issues

    own = server_resources(None)
    kinds = {(r["resourceType"], r["id"]) for r in own}
    assert {
        ("StructureDefinition", "virtual-visit"),
        ("StructureDefinition", "rpm-observation"),
        ("StructureDefinition", "rpm-device"),
        ("StructureDefinition", "virtual-modality"),
        ("StructureDefinition", "virtual-service-details"),
        ("ValueSet", "rpm-device-types"),
        ("ValueSet", "virtual-modality"),
        ("CodeSystem", "virtual-modality"),
    } <= kinds
    assert {(r["resourceType"], r["id"]): resource_issues(r) for r in own} == {k: [] for k in kinds}


def test_modality_extension_matches_the_search_parameter(registry: ProfileRegistry) -> None:
    from fhir_server.conformance import server_resources

    sp = next(r for r in server_resources(None) if r["id"] == "encounter-modality")
    assert MODALITY in sp["expression"]
    assert registry.profile_type(MODALITY) == "Extension"
    modality = registry.expansion("https://fhir-server.dev/fhir/ValueSet/virtual-modality")
    assert modality == {MODALITY_SYSTEM: frozenset({"video", "audio-only", "asynchronous"})}
    devices = registry.expansion("https://fhir-server.dev/fhir/ValueSet/rpm-device-types")
    assert devices is not None and len(devices[MDC]) == 5 and len(devices[SNOMED]) == 5


def _heart_rate_without_category() -> dict[str, Any]:
    obs = bp_observation()
    del obs["component"], obs["category"]
    obs["code"] = {"coding": [{"system": LOINC, "code": "8867-4"}]}
    obs["valueQuantity"] = quantity(72, "/min", "beats/minute")
    return obs


def test_vital_sign_code_requires_the_vital_signs_category(registry: ProfileRegistry) -> None:
    """rpm-4: a vital-sign LOINC code (observation-vitalsignresult) needs category vital-signs."""
    obs = _heart_rate_without_category()
    issues = errors(registry.validate(obs, RPM_OBSERVATION))
    assert [i.expression for i in issues] == [["Observation"]]
    assert "rpm-4" in issues[0].diagnostics
    for code in ("29463-7", "85354-9", "2708-6", "8310-5", "9279-1"):
        other = {**obs, "code": {"coding": [{"system": LOINC, "code": code}]}}
        assert errors(registry.validate(other, RPM_OBSERVATION)), code
    # A non-vital-sign reading (PHD glucose) needs no vital-signs category
    glucose = {**obs, "code": {"coding": [{"system": LOINC, "code": "2339-0"}]}}
    glucose["valueQuantity"] = quantity(104, "mg/dL")
    assert registry.validate(glucose, RPM_OBSERVATION) == []
    obs["category"] = bp_observation()["category"]
    assert registry.validate(obs, RPM_OBSERVATION) == []
