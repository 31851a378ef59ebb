"""The search parameter registry, custom SearchParameters, and compartments."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.fhir.compartments import (
    compartment_params,
    compartment_resource_types,
    compartment_types,
)
from fhir_server.fhir.extract import extract_index_values
from fhir_server.fhir.index_values import CompositeValue, QuantityValue, StringValue, TokenValue
from fhir_server.fhir.searchparams import SearchParamRegistry, load_default

CUSTOM: dict[str, Any] = {
    "resourceType": "SearchParameter",
    "id": "observation-device-name",
    "url": "http://example.org/fhir/SearchParameter/observation-method-text",
    "name": "method-text",
    "status": "active",
    "description": "Method text",
    "code": "method-text",
    "base": ["Observation"],
    "type": "string",
    "expression": "Observation.method.text",
}


def test_for_type_includes_resource_level_params() -> None:
    registry = load_default()
    obs = registry.for_type("Observation")
    assert {
        "code",
        "subject",
        "patient",
        "value-quantity",
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
    } <= set(obs)
    assert {"_security", "_source", "_text", "_content", "_list", "_has", "_type", "_query"} <= set(
        obs
    )
    assert "_text" not in registry.for_type("Bundle")  # Bundle is not a DomainResource
    assert "_tag" in registry.for_type("Bundle")
    assert registry.for_type("NoSuchType") == {}
    assert registry.get("Observation", "nope") is None


def test_definitions_are_narrowed_to_their_base() -> None:
    registry = load_default()
    patient = registry.get("Observation", "patient")
    assert patient is not None
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.type == "reference" and patient.targets == ("Patient",)
    assert patient.url == "http://hl7.org/fhir/SearchParameter/clinical-patient"
    assert registry.get("AllergyIntolerance", "patient").expression == "AllergyIntolerance.patient"  # type: ignore[union-attr]
    focus = registry.get("Observation", "focus")
    assert focus is not None and "Patient" in focus.targets and "Parameters" not in focus.targets
    quantity = registry.get("Observation", "value-quantity")
    assert (
        quantity is not None and "ap" in quantity.comparators and quantity.modifiers == ("missing",)
    )


def test_composite_components_are_resolved() -> None:
    composite = load_default().get("Observation", "component-code-value-quantity")
    assert composite is not None and composite.expression == "Observation.component"
    assert [(c.code, c.type, c.expression) for c in composite.components] == [
        ("component-code", "token", "code"),
        ("component-value-quantity", "quantity", "value.as(Quantity)"),
    ]
    # The R4 package swaps this composite's component definitions; the table repairs it.
    relationship = load_default().get("DocumentReference", "relationship")
    assert relationship is not None
    assert [(c.code, c.type, c.expression) for c in relationship.components] == [
        ("relation", "token", "code"),
        ("relatesto", "reference", "target"),
    ]


def test_add_custom_parameter_invalidates_the_extractor() -> None:
    registry = load_default()
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "method": {"text": "Cuff"},
    }
    assert not [v for v in extract_index_values(obs, registry) if v.param == "method-text"]
    registry.add(CUSTOM)
    assert registry.get("Observation", "method-text") is not None
    assert StringValue("method-text", "cuff", "Cuff") in extract_index_values(obs, registry)
    # load_default() gives independent registries over the same cached package tables.
    assert load_default().get("Observation", "method-text") is None


def test_add_composite_and_multi_base_parameters() -> None:
    registry = load_default()
    registry.add(
        {
            **CUSTOM,
            "url": "http://example.org/SearchParameter/code-value-pair",
            "code": "code-value-pair",
            "type": "composite",
            "expression": "Observation.component",
            "component": [
                {
                    "definition": "http://hl7.org/fhir/SearchParameter/Observation-component-code",
                    "expression": "code",
                },
                {
                    "definition": "http://hl7.org/fhir/SearchParameter/Observation-component-value-quantity",
                    "expression": "value.as(Quantity)",
                },
            ],
        }
    )
    obs = {
        "resourceType": "Observation",
        "component": [{"code": {"coding": [{"code": "a"}]}, "valueQuantity": {"value": 1}}],
    }
    assert [v for v in extract_index_values(obs, registry) if v.param == "code-value-pair"] == [
        CompositeValue(
            "code-value-pair",
            (
                TokenValue("component-code", None, "a"),
                QuantityValue("component-value-quantity", 1.0, None, None, None),
            ),
        )
    ]
    registry.add(
        {
            **CUSTOM,
            "url": "http://example.org/SearchParameter/any-note",
            "code": "note-text",
            "base": ["Observation", "Condition"],
            "expression": "Observation.note.text | Condition.note.text",
        }
    )
    note = registry.get("Condition", "note-text")
    assert note is not None and note.expression == "Condition.note.text"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expression": "Observation.method.text.descendants()"}, "unsupported expression"),
        ({"expression": "Observation.nothing"}, "has no element"),
        ({"expression": "Patient.name"}, "finds nothing"),
        ({"expression": None}, "expression is required"),
        ({"type": "fuzzy"}, "type must be one of"),
        ({"base": ["Nothing"]}, "base must list"),
        ({"code": ""}, "code and url are required"),
        ({"resourceType": "Patient"}, "resourceType must be SearchParameter"),
        ({"type": "composite"}, "needs components"),
        (
            {"type": "composite", "component": [{"definition": "urn:x", "expression": "a"}]},
            "not a known",
        ),
    ],
)
def test_add_rejects_bad_parameters(change: dict[str, Any], message: str) -> None:
    registry = load_default()
    resource = copy.deepcopy(CUSTOM)
    resource.update(change)
    with pytest.raises(ValueError, match=message):
        registry.add(resource)
    assert registry.get("Observation", "method-text") is None


def test_registry_types_and_load_default_alias() -> None:
    registry = SearchParamRegistry.load_default()
    assert len(registry.resource_types) == 146
    assert registry.extractor("Observation") is registry.extractor("Observation")


# --- compartments ----------------------------------------------------------------------------------


def test_compartment_params() -> None:
    assert compartment_types() == (
        "Device",
        "Encounter",
        "Patient",
        "Practitioner",
        "RelatedPerson",
    )
    assert compartment_params("Patient", "Observation") == ("subject", "performer")
    assert compartment_params("Patient", "Patient") == ("link",)
    assert compartment_params("Patient", "Device") == ()
    assert compartment_params("Encounter", "Observation") == ("encounter",)
    assert (
        compartment_params("Encounter", "Encounter") == ()
    )  # the compartment's own resource: by id
    assert "Encounter" in compartment_resource_types("Encounter")
    assert "Observation" in compartment_resource_types("Patient")
    assert "Organization" not in compartment_resource_types("Patient")
    with pytest.raises(ValueError, match="unknown compartment"):
        compartment_params("Group", "Observation")


def test_compartment_params_exist_for_their_types() -> None:
    registry = load_default()
    for compartment in compartment_types():
        for resource_type in compartment_resource_types(compartment):
            for code in compartment_params(compartment, resource_type):
                assert registry.get(resource_type, code) is not None, (
                    compartment,
                    resource_type,
                    code,
                )
