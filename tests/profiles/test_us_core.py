"""US Core 3.1.0 profiles (the package ships no examples: hand-made ones, one rule at a time)."""

from __future__ import annotations

from typing import Any

from fhir_server.fhir.profiles import ProfileRegistry
from tests.profiles.conftest import errors, paths

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
PATIENT = f"{US_CORE}/us-core-patient"
RACE = f"{US_CORE}/us-core-race"
OMB = "urn:oid:2.16.840.1.113883.6.238"


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"profile": [PATIENT]},
        "extension": [
            {
                "url": RACE,
                "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": OMB, "code": "2106-3"}},
                    {"url": "text", "valueString": "White"},
                ],
            }
        ],
        "identifier": [{"system": "https://example.org/mrn", "value": "12345"}],
        "name": [{"family": "Shaw", "given": ["Amy"]}],
        "gender": "female",
    }


def test_us_core_patient(registry: ProfileRegistry) -> None:
    assert registry.knows(PATIENT)
    assert errors(registry.validate(patient(), PATIENT)) == []


def test_us_core_patient_required_elements(registry: ProfileRegistry) -> None:
    p = patient()
    del p["identifier"], p["gender"]
    assert paths(registry.validate(p, PATIENT)) == {"Patient.identifier", "Patient.gender"}


def test_us_core_patient_name_invariant(registry: ProfileRegistry) -> None:
    p = patient()
    p["name"] = [{"use": "official"}]  # us-core-8: family or given (or a data-absent-reason)
    issues = errors(registry.validate(p, PATIENT))
    assert issues and all(i.expression == ["Patient.name[0]"] for i in issues)


def test_us_core_race_extension(registry: ProfileRegistry) -> None:
    p = patient()
    p["extension"][0]["extension"].pop()  # race needs its text
    assert paths(registry.validate(p, PATIENT)) == {"Patient.extension[0].extension"}
    p = patient()
    p["extension"][0]["extension"][0]["valueCoding"]["code"] = "9999-9"  # not an OMB category
    assert paths(registry.validate(p, PATIENT)) == {"Patient.extension[0].extension[0].valueCoding"}


def test_us_core_pulse_oximetry_builds_on_the_core_profiles(registry: ProfileRegistry) -> None:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
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
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "2708-6"},
                {"system": "http://loinc.org", "code": "59408-5"},
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-14T08:30:00-04:00",
        "valueQuantity": {
            "value": 97,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    }
    url = f"{US_CORE}/us-core-pulse-oximetry"
    assert errors(registry.validate(obs, url)) == []
    del obs["code"]["coding"][1]  # US Core adds the 59408-5 coding to the core oxygensat
    assert paths(registry.validate(obs, url)) == {"Observation.code.coding"}
