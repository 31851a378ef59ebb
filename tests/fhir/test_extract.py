"""Search-index values extracted from resources (fhir_server.fhir.extract)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fhir_server.fhir.dates import datetime_to_us
from fhir_server.fhir.extract import extract_index_values, make_converter
from fhir_server.fhir.index_values import (
    DATE_MAX,
    DATE_MIN,
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.fhir.text import normalize_string

UTC = dt.UTC
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.load_default()


def rows(resource: dict[str, Any], param: str, registry: SearchParamRegistry) -> list[IndexValue]:
    return [v for v in extract_index_values(resource, registry) if v.param == param]


def us(year: int, month: int = 1, day: int = 1, hour: int = 0) -> int:
    return datetime_to_us(dt.datetime(year, month, day, hour, tzinfo=UTC))


def vital(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "hr",
        "meta": {
            "lastUpdated": "2024-03-05T10:00:00Z",
            "profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"],
            "tag": [{"system": "urn:tags", "code": "rpm", "display": "Remote"}],
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
            ],
            "source": "urn:device:1",
        },
        "status": "final",
        "category": [{"coding": [{"system": "urn:cat", "code": "vital-signs"}]}],
        "code": {
            "coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}],
            "text": "Heart Rate",
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-05T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": UCUM, "code": "/min"},
        **extra,
    }


# --- tokens ----------------------------------------------------------------------------------------


def test_codeable_concept_codings_and_text(registry: SearchParamRegistry) -> None:
    assert rows(vital(), "code", registry) == [
        TokenValue("code", LOINC, "8867-4"),
        TokenValue("code", None, None, "heart rate"),  # display and text normalise alike: one row
    ]
    assert rows(vital(), "status", registry) == [TokenValue("status", None, "final")]


def test_identifier_and_of_type(registry: SearchParamRegistry) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {
                "system": "urn:mrn",
                "value": "123",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
            },
            {"value": "no-system"},
            {"system": "urn:only-system"},
        ],
    }
    assert rows(patient, "identifier", registry) == [
        TokenValue("identifier", "urn:mrn", "123"),
        TokenValue("identifier", None, "no-system"),
        TokenValue("identifier", "urn:only-system", None),
    ]
    assert rows(patient, "identifier:of-type", registry) == [
        TokenValue("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "MR|123")
    ]


def test_boolean_contact_point_and_plain_codes(registry: SearchParamRegistry) -> None:
    patient = {
        "resourceType": "Patient",
        "active": True,
        "gender": "female",
        "telecom": [
            {"system": "phone", "value": "+1 555"},
            {"system": "email", "value": "a@b.example"},
        ],
    }
    assert rows(patient, "active", registry) == [TokenValue("active", None, "true")]
    assert rows(patient, "gender", registry) == [TokenValue("gender", None, "female")]
    assert rows(patient, "email", registry) == [TokenValue("email", None, "a@b.example")]
    assert rows(patient, "phone", registry) == [TokenValue("phone", None, "+1 555")]
    assert len(rows(patient, "telecom", registry)) == 2
    assert rows(patient, "deceased", registry) == [TokenValue("deceased", None, "false")]
    assert rows({**patient, "deceasedDateTime": "2020"}, "deceased", registry) == [
        TokenValue("deceased", None, "true")
    ]


def test_resource_level_meta_params(registry: SearchParamRegistry) -> None:
    values = extract_index_values(vital(), registry)
    assert TokenValue("_tag", "urn:tags", "rpm") in values
    assert TokenValue("_tag", None, None, "remote") in values
    assert UriValue("_profile", "http://hl7.org/fhir/StructureDefinition/vitalsigns") in values
    assert (
        TokenValue("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "N")
        in values
    )
    assert UriValue("_source", "urn:device:1") in values
    # The store keeps these on the resource row.
    assert not [v for v in values if v.param in ("_id", "_lastUpdated")]


# --- strings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Mary   Ann\tSmith ", "mary ann smith"),
        ("José Ñúñez", "jose nunez"),
        ("STRAẞE Straße", "strasse strasse"),
        ("ﬁnn\u00a0O'Brien", "finn o'brien"),
        ("Ångström", "angstrom"),
        ("", ""),
    ],
)
def test_normalize_string(text: str, expected: str) -> None:
    assert normalize_string(text) == expected


def test_human_name_and_address_parts(registry: SearchParamRegistry) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {
                "family": "Müller  Lüdenscheidt",
                "given": ["José", "Ann"],
                "prefix": ["Dr."],
                "text": "Dr. J M",
            }
        ],
        "address": [
            {
                "line": ["1 Main St", "Apt 2"],
                "city": "Zürich",
                "postalCode": "8000",
                "country": "CH",
            }
        ],
    }
    assert [
        (v.norm, v.exact) for v in rows(patient, "name", registry) if isinstance(v, StringValue)
    ] == [
        ("muller ludenscheidt", "Müller  Lüdenscheidt"),
        ("jose", "José"),
        ("ann", "Ann"),
        ("dr.", "Dr."),
        ("dr. j m", "Dr. J M"),
    ]
    assert rows(patient, "family", registry) == [
        StringValue("family", "muller ludenscheidt", "Müller  Lüdenscheidt")
    ]
    assert [v.norm for v in rows(patient, "address", registry) if isinstance(v, StringValue)] == [
        "1 main st",
        "apt 2",
        "zurich",
        "8000",
        "ch",
    ]
    assert rows(patient, "address-city", registry) == [
        StringValue("address-city", "zurich", "Zürich")
    ]


# --- dates -----------------------------------------------------------------------------------------


def test_date_period_timing_and_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    local = SearchParamRegistry.load_default(tz=berlin)
    obs = vital(effectiveDateTime="2024-03-05")
    assert rows(obs, "date", local) == [
        DateValue(
            "date",
            datetime_to_us(dt.datetime(2024, 3, 5, tzinfo=berlin)),
            datetime_to_us(dt.datetime(2024, 3, 6, tzinfo=berlin)),
        )
    ]
    obs = vital(effectivePeriod={"start": "2024-03-05T10:00:00Z"})
    del obs["effectiveDateTime"]
    assert rows(obs, "date", local) == [DateValue("date", us(2024, 3, 5, 10), DATE_MAX)]
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "dosageInstruction": [{"timing": {"event": ["2024-03-07", "2024-03-05T08:00:00Z"]}}],
    }
    conv = make_converter("x", "date", "Timing", UTC)
    assert conv is not None
    out: list[IndexValue] = []
    conv(request["dosageInstruction"][0]["timing"], out)
    assert out == [DateValue("x", us(2024, 3, 5, 8), us(2024, 3, 8))]
    out = []
    conv({"repeat": {"boundsPeriod": {"end": "2024"}}}, out)
    assert out == [DateValue("x", DATE_MIN, us(2025, 1, 1))]


def test_malformed_values_are_skipped_not_raised(registry: SearchParamRegistry) -> None:
    obs = vital(effectiveDateTime="yesterday", valueQuantity={"value": "n/a"}, status=7)
    values = extract_index_values(obs, registry)
    assert not [v for v in values if v.param in ("date", "value-quantity", "status")]


# --- numbers and quantities ------------------------------------------------------------------------


def _pairs(values: list[IndexValue]) -> set[tuple[str | None, float]]:
    out = set()
    for value in values:
        assert isinstance(value, CompositeValue)
        code, quantity = value.components
        assert isinstance(code, TokenValue) and isinstance(quantity, QuantityValue)
        out.add((code.code, quantity.value))
    return out


def test_quantity_and_composites_pair_within_one_repetition(registry: SearchParamRegistry) -> None:
    bp = vital(
        code={"coding": [{"system": LOINC, "code": "85354-9"}]},
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 140, "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 90, "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    )
    del bp["valueQuantity"]
    pairs = _pairs(rows(bp, "component-code-value-quantity", registry))
    assert pairs == {("8480-6", 140.0), ("8462-4", 90.0)}  # never 8480-6 with 90
    assert rows(bp, "code-value-quantity", registry) == []  # the panel itself has no value
    combo = _pairs(rows(bp, "combo-code-value-quantity", registry))
    assert combo == pairs
    hr = rows(vital(), "code-value-quantity", registry)
    assert hr == [
        CompositeValue(
            "code-value-quantity",
            (
                TokenValue("code", LOINC, "8867-4"),
                QuantityValue("value-quantity", 72.0, UCUM, "/min", "beats/minute"),
            ),
        )
    ]
    assert rows(vital(), "value-quantity", registry) == [
        QuantityValue("value-quantity", 72.0, UCUM, "/min", "beats/minute")
    ]


def test_money_range_number_and_age(registry: SearchParamRegistry) -> None:
    claim = {"resourceType": "ChargeItem", "priceOverride": {"value": 12.5, "currency": "EUR"}}
    assert rows(claim, "price-override", registry) == [
        QuantityValue("price-override", 12.5, "urn:iso:std:iso:4217", "EUR", None)
    ]
    condition = {
        "resourceType": "Condition",
        "onsetRange": {"low": {"value": 2, "unit": "a"}, "high": {"value": 5}},
    }
    assert rows(condition, "onset-age", registry) == [
        QuantityValue("onset-age", 2.0, None, None, "a"),
        QuantityValue("onset-age", 5.0, None, None, None),
    ]
    assert rows(
        {"resourceType": "Condition", "onsetAge": {"value": 70, "code": "a"}}, "onset-age", registry
    ) == [QuantityValue("onset-age", 70.0, None, "a", None)]
    risk = {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.25}]}
    assert rows(risk, "probability", registry) == [NumberValue("probability", 0.25)]
    sampled = vital(valueSampledData={"origin": {"value": 1}, "period": 1, "dimensions": 1})
    del sampled["valueQuantity"]
    assert rows(sampled, "value-quantity", registry) == []


# --- references and uris ---------------------------------------------------------------------------


def test_reference_forms(registry: SearchParamRegistry) -> None:
    obs = vital(
        performer=[
            {"reference": "Practitioner/d1/_history/3"},
            {"reference": "https://other.example/fhir/Practitioner/9"},
            {"reference": "#c1"},
            {"reference": "urn:uuid:4a0e4b2e-9a5e-4b7e-8d3f-2f1c3a1b2c3d"},
            {"identifier": {"system": "urn:npi", "value": "42"}, "display": "Dr X"},
            {"reference": "Nonsense/x"},
        ]
    )
    assert rows(obs, "performer", registry) == [
        ReferenceValue("performer", "Practitioner", "d1"),
        ReferenceValue("performer", None, None, "https://other.example/fhir/Practitioner/9"),
        ReferenceValue("performer", None, None, "#c1"),
        ReferenceValue("performer", None, None, "urn:uuid:4a0e4b2e-9a5e-4b7e-8d3f-2f1c3a1b2c3d"),
        ReferenceValue("performer", None, None, "Nonsense/x"),
    ]
    assert rows(obs, "performer:identifier", registry) == [
        TokenValue("performer:identifier", "urn:npi", "42")
    ]
    assert rows(obs, "patient", registry) == [ReferenceValue("patient", "Patient", "p1")]
    group_subject = vital(subject={"reference": "Group/g1"})
    assert rows(group_subject, "patient", registry) == []
    assert rows(group_subject, "subject", registry) == [ReferenceValue("subject", "Group", "g1")]


def test_canonical_as_reference_and_uri(registry: SearchParamRegistry) -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://example.org/Questionnaire/q|1.0",
    }
    assert rows(response, "questionnaire", registry) == [
        ReferenceValue("questionnaire", None, None, "http://example.org/Questionnaire/q|1.0")
    ]
    vs = {"resourceType": "ValueSet", "url": "http://example.org/vs"}
    assert rows(vs, "url", registry) == [UriValue("url", "http://example.org/vs")]


def test_bundle_first_entry_and_extension_values(registry: SearchParamRegistry) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "document",
        "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}],
    }
    assert rows(bundle, "composition", registry) == [
        ReferenceValue("composition", "Composition", "c1")
    ]
    assert rows(bundle, "message", registry) == [ReferenceValue("message", "Composition", "c1")]
    gene = "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene"
    obs = vital(
        extension=[
            {
                "url": gene,
                "valueCodeableConcept": {"coding": [{"system": "urn:hgnc", "code": "BRCA1"}]},
            }
        ]
    )
    assert rows(obs, "gene-identifier", registry) == [
        TokenValue("gene-identifier", "urn:hgnc", "BRCA1")
    ]


def test_values_are_deduplicated(registry: SearchParamRegistry) -> None:
    obs = vital(category=[{"coding": [{"system": "urn:cat", "code": "vital-signs"}]}] * 3)
    assert rows(obs, "category", registry) == [TokenValue("category", "urn:cat", "vital-signs")]
    values = extract_index_values(obs, registry)
    assert len(values) == len(set(values))


def test_unknown_or_special_types_yield_nothing() -> None:
    assert make_converter("x", "quantity", "SampledData", UTC) is None
    assert make_converter("x", "date", "Age", UTC) is None
    assert make_converter("x", "special", "Location.position", UTC) is None
