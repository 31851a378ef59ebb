"""The FHIRPath-subset compiler: parser, typed branches, functions and operators.

Every R4 definition compiling, and agreement with fhirpathpy on the official examples, are tested in
test_searchparams_definitions.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.fhir.fhirpath import (
    FhirPathError,
    compile_expression,
    evaluate,
    load_model,
    narrow_expression,
    split_union,
)
from fhir_server.fhir.fhirpath.parser import (
    BinOp,
    Call,
    Ident,
    Index,
    Member,
    Num,
    Str,
    TypeOp,
    parse,
)

OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": {"tag": [{"system": "urn:t", "code": "a"}]},
    "contained": [{"resourceType": "Patient", "id": "p1"}],
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
    "subject": {"reference": "Patient/123"},
    "performer": [
        {"reference": "#p1"},
        {"reference": "https://other.example/fhir/Practitioner/9/_history/2"},
        {"reference": "urn:uuid:0b6e4b2e-9a5e-4b7e-8d3f-2f1c3a1b2c3d"},
        {"type": "RelatedPerson", "identifier": {"value": "x"}},
    ],
    "effectivePeriod": {"start": "2024-03-01"},
    "valueString": "high",
    "component": [
        {"code": {"text": "sys"}, "valueQuantity": {"value": 120}},
        {"code": {"text": "dia"}, "valueQuantity": {"value": 80}},
        {
            "code": {"text": "note"},
            "valueString": "ok",
            "extension": [{"url": "urn:x", "valueBoolean": True}],
        },
    ],
    "extension": [{"url": "urn:e", "valueString": "ext"}, {"url": "urn:f", "valueCode": "c"}],
}


def run(
    expression: str, resource: dict[str, Any] = OBS, context: str | None = None
) -> list[tuple[str, Any]]:
    return evaluate(compile_expression(expression, context or resource["resourceType"]), resource)


def values(expression: str, resource: dict[str, Any] = OBS) -> list[Any]:
    return [v for _, v in run(expression, resource)]


# --- parser ----------------------------------------------------------------------------------------


def test_parse_precedence_and_literals() -> None:
    node = parse("a.b | c.where(d = 'x\\'y') and true")
    assert isinstance(node, BinOp) and node.op == "and"
    assert isinstance(node.left, BinOp) and node.left.op == "|"
    where = node.left.right
    assert isinstance(where, Call) and where.args == (BinOp("=", Ident("d"), Str("x'y")),)
    assert parse("`div`.x") == Member(Ident("div"), "x")
    assert parse("a as FHIR.Quantity") == TypeOp("as", Ident("a"), "FHIR.Quantity")
    assert parse("a[0]") == Index(Ident("a"), Num(0))
    assert parse("'\\u00e9\\n'") == Str("é\n")


@pytest.mark.parametrize(
    "text",
    [
        "a.b +",
        "a.(b)",
        "a.b c",
        "'open",
        "a > 1",
        "a.b implies c",
        "@2024-01-01",
        "$index",
        "a[",
        "a.b xor c",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(FhirPathError):
        parse(text)


# --- compiler --------------------------------------------------------------------------------------


def test_choice_elements_expand_to_typed_keys() -> None:
    branches = compile_expression("Observation.effective", "Observation")
    assert {(b.type, b.root_key) for b in branches} == {
        ("dateTime", "effectiveDateTime"),
        ("Period", "effectivePeriod"),
        ("Timing", "effectiveTiming"),
        ("instant", "effectiveInstant"),
    }
    assert run("Observation.effective") == [("Period", {"start": "2024-03-01"})]


def test_as_of_type_and_is() -> None:
    assert run("(Observation.value as string)") == [("string", "high")]
    assert run("Observation.value.as(Quantity)") == []
    assert run("(Observation.component.value as Quantity)") == [
        ("Quantity", {"value": 120}),
        ("Quantity", {"value": 80}),
    ]
    assert values("Observation.component.value.ofType(string)") == ["ok"]
    assert values("Observation.value is string") == [True]
    assert values("Observation.value.is(Quantity)") == [False]
    # Subtypes: Age is a Quantity; the R4 package's `as(DateTime)` means dateTime.
    onset = {"resourceType": "Condition", "onsetAge": {"value": 3}}
    assert run("Condition.onset.as(Quantity)", onset) == [("Age", {"value": 3})]
    assert [
        b.type for b in compile_expression("Observation.value.as(DateTime)", "Observation")
    ] == ["dateTime"]


def test_where_with_resolve_is() -> None:
    assert values("Observation.subject.where(resolve() is Patient)") == [
        {"reference": "Patient/123"}
    ]
    assert values("Observation.subject.where(resolve() is Group)") == []
    performers = values("Observation.performer.where(resolve() is Patient)")
    assert performers == [{"reference": "#p1"}]  # found in contained
    assert (
        len(values("Observation.performer.where(resolve() is Practitioner)")) == 1
    )  # absolute URL
    assert (
        len(values("Observation.performer.where(resolve() is RelatedPerson)")) == 1
    )  # Reference.type
    assert values("Observation.performer.where(resolve().is(Practitioner))")


def test_where_comparisons_and_logic() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
    }
    assert values("Patient.telecom.where(system='email').value", patient) == ["a@b"]
    assert values("Patient.telecom.where(system!='email').value", patient) == ["1"]
    assert values("Patient.telecom.where(system='fax' or value='1').value", patient) == ["1"]
    assert values("Patient.telecom.where(system='phone' and value='2')", patient) == []
    assert values("Patient.telecom.where(value.exists().not()).value", patient) == []
    assert values("Patient.telecom.exists(system='email')", patient) == [True]
    assert values("Patient.photo.empty()", patient) == [True]


@pytest.mark.parametrize(
    ("patient", "expected"),
    [
        ({}, [False]),
        ({"deceasedBoolean": False}, [False]),
        ({"deceasedBoolean": True}, [True]),
        ({"deceasedDateTime": "2020"}, [True]),
    ],
)
def test_patient_deceased_expression(patient: dict[str, Any], expected: list[bool]) -> None:
    resource = {"resourceType": "Patient", **patient}
    assert values("Patient.deceased.exists() and Patient.deceased != false", resource) == expected


def test_union_extension_first_index_resource() -> None:
    assert values("Observation.status | Observation.value") == ["final", "high"]
    assert values("Observation.extension('urn:e')") == [{"url": "urn:e", "valueString": "ext"}]
    assert values("Observation.extension('urn:f').value") == ["c"]
    assert run("Observation.extension.where(url='urn:f').value") == [("code", "c")]
    assert values("Observation.component.where(hasExtension('urn:x')).code.text") == ["note"]
    assert values("Observation.component.code.text.first()") == ["sys"]
    assert values("Observation.component[1].code.text") == ["dia"]
    assert values("Observation.component.value.first()") == [{"value": 120}]
    assert values("%resource.status") == ["final"]
    assert values("Resource.meta.tag.code") == ["a"]
    assert values("DomainResource.contained.ofType(Patient).id") == ["p1"]
    assert values("Observation.contained.id") == ["p1"]


def test_terms_for_other_types_have_no_branches() -> None:
    assert compile_expression("Patient.name | Practitioner.name", "Observation") == ()
    assert len(compile_expression("Patient.name | Observation.code", "Observation")) == 1


def test_root_keys_let_callers_skip_absent_elements() -> None:
    assert [
        b.root_key for b in compile_expression("Observation.component.code", "Observation")
    ] == ["component"]
    assert [b.root_key for b in compile_expression("Observation", "Observation")] == [None]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("Observation.nothing", "has no element"),
        ("Observation.code.descendants()", "not supported"),
        ("Observation.value as Nonsense", "unknown type"),
        ("Observation.code[%x]", "index"),
        ("%foo", "unknown variable"),
        ("Observation.status.resolve()", "not supported"),
    ],
)
def test_unsupported_expressions_fail_at_compile_time(expression: str, message: str) -> None:
    with pytest.raises(FhirPathError, match=message):
        compile_expression(expression, "Observation")


def test_split_and_narrow() -> None:
    text = "(A.value as Quantity) | B.x.where(y = 'a|b') | Resource.id | foo"
    assert split_union(text) == [
        "(A.value as Quantity)",
        "B.x.where(y = 'a|b')",
        "Resource.id",
        "foo",
    ]
    assert narrow_expression(text, "B", {"A", "B"}) == "B.x.where(y = 'a|b') | Resource.id | foo"


def test_model_subtypes() -> None:
    model = load_model()
    assert model.is_subtype("Age", "Quantity")
    assert model.is_subtype("Observation", "Resource")
    assert not model.is_subtype("Quantity", "Age")
    assert "Observation" in model.resource_types and "DomainResource" not in model.resource_types
