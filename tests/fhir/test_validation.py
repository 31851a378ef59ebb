"""validate_resource: good and bad resources for each check, with the element paths asserted."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from fhir_server.errors import Issue, Unprocessable
from fhir_server.fhir.validation import merge, resource_issues, validate_resource, walk_issues


def bp_observation() -> dict[str, Any]:
    """A Synthea-style blood pressure panel: the typical telehealth write."""
    return {
        "resourceType": "Observation",
        "id": "bp-1",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]},
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
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-01T10:30:00+02:00",
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {
                    "value": 120,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {
                    "value": 80.5,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
        ],
    }


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        "active": True,
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
        "gender": "female",
        "birthDate": "1970-01-31",
        "multipleBirthInteger": 2,
        "address": [{"line": ["1 Main St"], "city": "Springfield"}],
    }


def issues_at(resource: dict[str, Any]) -> dict[str, Issue]:
    """Issues by path; fails if validate_resource does not raise a 422 carrying them."""
    with pytest.raises(Unprocessable) as exc:
        validate_resource(resource)
    assert exc.value.status == 422
    assert all(i.severity == "error" and len(i.expression) == 1 for i in exc.value.issues)
    return {i.expression[0]: i for i in exc.value.issues}


def test_valid_resources_pass() -> None:
    validate_resource(bp_observation())
    validate_resource(patient())
    assert walk_issues(bp_observation()) == []


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ({"status": "final"}, "resourceType"),
        ({"resourceType": "Foo"}, "resourceType"),
        ({"resourceType": "DomainResource"}, "resourceType"),  # abstract
        ({"resourceType": 7}, "resourceType"),
    ],
)
def test_resource_type_must_be_a_concrete_r4_type(resource: dict[str, Any], path: str) -> None:
    found = issues_at(resource)
    assert list(found) == [path]
    assert found[path].code == "invalid"
    assert "resourceType" in found[path].diagnostics


def test_non_object_is_refused() -> None:
    with pytest.raises(Unprocessable):
        validate_resource([])  # type: ignore[arg-type]


def test_required_code_bindings() -> None:
    obs = bp_observation()
    obs["status"] = "done"
    obs["component"][1]["valueQuantity"]["comparator"] = "about"
    found = issues_at(obs)
    assert found["Observation.status"].code == "code-invalid"
    assert "observation-status" in found["Observation.status"].diagnostics
    assert found["Observation.component[1].valueQuantity.comparator"].code == "code-invalid"
    assert len(found) == 2

    pat = patient()
    pat["name"][0]["use"] = "nickname-ish"
    pat["gender"] = "F"
    assert set(issues_at(pat)) == {"Patient.name[0].use", "Patient.gender"}


def test_code_without_required_binding_is_only_format_checked() -> None:
    obs = bp_observation()
    obs["code"]["coding"][0]["code"] = "any-local-code"  # Coding.code has no binding
    validate_resource(obs)
    obs["code"]["coding"][0]["code"] = " padded"
    assert issues_at(obs)["Observation.code.coding[0].code"].code == "value"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (72, True),
        (72.5, True),
        (-0.0, True),
        (Decimal("80.50"), True),  # what json.loads(parse_float=Decimal) gives
        (Decimal("NaN"), False),
        ("72", False),
        (True, False),
        (None, False),
    ],
)
def test_decimal_must_be_a_json_number(value: Any, ok: bool) -> None:
    obs = bp_observation()
    obs["component"][1]["valueQuantity"]["value"] = value
    if ok:
        validate_resource(obs)
    else:
        found = issues_at(obs)
        assert list(found) == ["Observation.component[1].valueQuantity.value"]


@pytest.mark.parametrize("value", ["2", 2.0, 2.5, Decimal("2.0"), True, 2**31, -(2**31) - 1])
def test_integer_must_be_a_json_integer_in_range(value: Any) -> None:
    pat = patient()
    pat["multipleBirthInteger"] = value
    assert issues_at(pat)["Patient.multipleBirthInteger"].code == "value"


def test_positive_and_unsigned_int_ranges() -> None:
    pat = patient()
    pat["photo"] = [{"contentType": "image/png", "size": -1}]
    assert "Patient.photo[0].size" in issues_at(pat)  # unsignedInt
    pat["photo"] = [{"contentType": "image/png", "size": 0}]
    validate_resource(pat)
    med = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "x"},
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [{"timing": {"repeat": {"count": 0}}}],
    }
    assert "MedicationRequest.dosageInstruction[0].timing.repeat.count" in issues_at(med)


@pytest.mark.parametrize("value", ["true", 1, 0, None])
def test_boolean_must_be_a_json_boolean(value: Any) -> None:
    pat = patient()
    pat["active"] = value
    assert list(issues_at(pat)) == ["Patient.active"]


@pytest.mark.parametrize("value", [3, 3.5, False, {"a": 1}])
def test_string_must_be_a_json_string(value: Any) -> None:
    pat = patient()
    pat["name"][0]["family"] = value
    assert "Patient.name[0].family" in issues_at(pat)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a-b.C9", True), ("x" * 64, True), ("x" * 65, False), ("a b", False), ("a_b", False)],
)
def test_resource_id_format(value: str, ok: bool) -> None:
    pat = patient()
    pat["id"] = value
    pat["contained"] = [{"resourceType": "Organization", "id": value, "name": "Org"}]
    if ok:
        validate_resource(pat)
    else:
        found = issues_at(pat)
        assert {"Patient.id", "Patient.contained[0].id"} <= set(found)


def test_element_id_is_a_plain_string() -> None:
    pat = patient()
    pat["name"][0]["id"] = "any string with spaces"  # Element.id is a string, not an id
    validate_resource(pat)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("birthDate", "1970-13-01"),
        ("birthDate", "1970-1-1"),
        ("deceasedDateTime", "2020-01-01T10:00:00"),  # a time needs a zone in FHIR
        ("deceasedDateTime", "yesterday"),
    ],
)
def test_date_formats(field: str, value: str) -> None:
    pat = patient()
    pat[field] = value
    assert f"Patient.{field}" in issues_at(pat)


def test_unknown_elements() -> None:
    obs = bp_observation()
    obs["foo"] = 1
    obs["component"][0]["valueQuantity"]["units"] = "mmHg"
    obs["_code"] = {"id": "x"}  # code is complex: no primitive extension
    obs["_nothing"] = {"id": "x"}
    found = issues_at(obs)
    assert set(found) == {
        "Observation.foo",
        "Observation.component[0].valueQuantity.units",
        "Observation._code",
        "Observation._nothing",
    }
    assert {i.code for i in found.values()} == {"structure"}


def test_array_versus_single_value() -> None:
    obs = bp_observation()
    obs["code"] = [obs["code"]]
    obs["category"] = obs["category"][0]
    obs["status"] = ["final"]
    found = issues_at(obs)
    assert {"Observation.code", "Observation.category", "Observation.status"} <= set(found)
    assert found["Observation.category"].code == "structure"


def test_missing_required_elements() -> None:
    obs = bp_observation()
    del obs["status"]
    del obs["component"][1]["code"]
    obs["extension"] = [{"valueString": "no url"}]
    found = issues_at(obs)
    assert set(found) == {
        "Observation.status",
        "Observation.component[1].code",
        "Observation.extension[0].url",
    }
    assert {i.code for i in found.values()} == {"required"}


def test_required_primitive_may_carry_only_an_extension() -> None:
    obs = bp_observation()
    del obs["status"]
    obs["_status"] = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }
    assert walk_issues(obs) == []


def test_one_type_per_choice_element() -> None:
    obs = bp_observation()
    obs["effectivePeriod"] = {"start": "2024-05-01"}
    found = issues_at(obs)
    assert len(found) == 1
    ((path, issue),) = found.items()
    assert path in ("Observation.effectivePeriod", "Observation.effectiveDateTime")
    assert issue.code == "structure"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda r: r.update(status=""), "Observation.status"),
        (lambda r: r["code"].update(text=""), "Observation.code.text"),
        (lambda r: r.update(subject={}), "Observation.subject"),
        (lambda r: r.update(note=[]), "Observation.note"),
        (lambda r: r.update(issued=None), "Observation.issued"),
        (lambda r: r.update(subject=None), "Observation.subject"),
        (lambda r: r["category"].append(None), "Observation.category[1]"),
        (lambda r: r["category"].append({}), "Observation.category[1]"),
    ],
)
def test_empty_and_null_values_are_invalid(mutate: Any, path: str) -> None:
    obs = bp_observation()
    mutate(obs)
    assert path in issues_at(obs)


def test_primitive_extensions() -> None:
    pat = patient()
    ext = {"extension": [{"url": "http://example.org/x", "valueBoolean": True}]}
    pat["_birthDate"] = ext
    pat["name"][0]["given"] = ["Jane", None]
    pat["name"][0]["_given"] = [None, ext]  # null keeps positions aligned
    pat["_gender"] = {"id": "g1"}
    validate_resource(pat)

    bad = copy.deepcopy(pat)
    bad["name"][0]["_given"] = [None, None]  # given[1] then has neither value nor extension
    assert "Patient.name[0].given[1]" in issues_at(bad)
    bad = copy.deepcopy(pat)
    bad["name"][0]["_given"] = [ext]  # must align with given
    assert "Patient.name[0]._given" in issues_at(bad)
    bad = copy.deepcopy(pat)
    bad["_birthDate"] = {"extension": [{"url": 3}]}
    assert "Patient.birthDate.extension[0].url" in issues_at(bad)
    bad = copy.deepcopy(pat)
    bad["_birthDate"] = {"value": "1970-01-31"}
    assert "Patient.birthDate.value" in issues_at(bad)
    bad = copy.deepcopy(pat)
    bad["name"][0]["given"] = ["Jane", None]
    del bad["name"][0]["_given"]
    assert "Patient.name[0].given[1]" in issues_at(bad)


def test_narrative_div_must_be_a_div() -> None:
    pat = patient()
    pat["text"]["div"] = "plain text"
    assert issues_at(pat)["Patient.text.div"].code == "value"
    pat["text"]["div"] = "  <div>indented</div>"
    validate_resource(pat)
    pat["_text"] = {"id": "x"}
    assert "Patient._text" in issues_at(pat)


def test_contained_resources_are_validated() -> None:
    pat = patient()
    pat["contained"] = [
        {"resourceType": "Organization", "id": "o1", "name": "Org"},
        {"resourceType": "Practitioner", "id": "pr1", "gender": "x", "active": "yes"},
        {"resourceType": "Nope"},
    ]
    found = issues_at(pat)
    assert set(found) == {
        "Patient.contained[1].gender",
        "Patient.contained[1].active",
        "Patient.contained[2].resourceType",
    }


def test_bundle_entry_resources_are_validated() -> None:
    obs = bp_observation()
    obs["status"] = "done"
    obs["component"][0]["valueQuantity"]["value"] = "120"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": obs, "request": {"method": "PUT", "url": "Observation/bp-1"}},
            {"request": {"method": "GOT", "url": "Patient/p1"}},
        ],
    }
    found = issues_at(bundle)
    assert set(found) == {
        "Bundle.entry[1].resource.status",
        "Bundle.entry[1].resource.component[0].valueQuantity.value",
        "Bundle.entry[2].request.method",
    }
    inner = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bundle}]}
    assert "Bundle.entry[0].resource.entry[1].resource.status" in issues_at(inner)


def test_all_issues_are_reported_once() -> None:
    obs = bp_observation()
    del obs["status"]  # found by both the walk and the model: reported once
    obs["code"]["coding"][0]["system"] = 5
    obs["component"][1]["valueQuantity"]["value"] = "80"
    issues = resource_issues(obs)
    paths = [i.expression[0] for i in issues]
    assert sorted(paths) == sorted(set(paths))
    assert set(paths) == {
        "Observation.status",
        "Observation.code.coding[0].system",
        "Observation.component[1].valueQuantity.value",
    }
    with pytest.raises(Unprocessable) as exc:
        validate_resource(obs)
    assert "3 issues" not in exc.value.diagnostics  # "(and 2 more issues)"
    assert "and 2 more" in exc.value.diagnostics
    assert exc.value.outcome()["issue"][0]["expression"]


def test_r4_only_types_get_the_structural_check() -> None:
    product: dict[str, Any] = {
        "resourceType": "MedicinalProduct",
        "id": "mp1",
        "name": [{"productName": "Aspirin 100 mg"}],
    }
    validate_resource(product)
    bad = {**product, "name": {"productName": "x"}, "colour": "red", "id": "a b"}
    found = issues_at(bad)
    assert set(found) == {"MedicinalProduct.name", "MedicinalProduct.colour", "MedicinalProduct.id"}
    assert "MedicinalProduct.name" in issues_at({"resourceType": "MedicinalProduct"})
    # inside a Bundle: the model never sees it, the walk checks it
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": product}],
    }
    validate_resource(bundle)
    bundle["entry"][0]["resource"] = bad
    assert "Bundle.entry[0].resource.colour" in issues_at(bundle)


def test_model_issues_are_translated_to_paths() -> None:
    # R4B reshaped Evidence: a valid R4 Evidence fails the (declared) R4B model, and the issues
    # come back with element paths rather than pydantic locations.
    evidence = {
        "resourceType": "Evidence",
        "status": "draft",
        "exposureBackground": {"reference": "EvidenceVariable/x"},
    }
    assert walk_issues(evidence) == []
    found = issues_at(evidence)
    assert "Evidence.exposureBackground" in found
    assert all(p.startswith("Evidence") and "root" not in p for p in found)


def test_every_primitive_of_a_valid_resource_is_checked_at_its_path() -> None:
    """Swap each primitive of a valid resource for an object: exactly that path is reported."""
    base = bp_observation()

    def leaves(node: Any, path: str, keys: tuple[Any, ...]) -> list[tuple[str, tuple[Any, ...]]]:
        if isinstance(node, dict):
            return [x for k, v in node.items() for x in leaves(v, f"{path}.{k}", (*keys, k))]
        if isinstance(node, list):
            return [x for i, v in enumerate(node) for x in leaves(v, f"{path}[{i}]", (*keys, i))]
        return [(path, keys)]

    found_leaves = leaves(base, "Observation", ())
    assert len(found_leaves) > 20
    for path, keys in found_leaves:
        if keys == ("resourceType",):
            continue
        bad = copy.deepcopy(base)
        target: Any = bad
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = {"x": 1}
        paths = {i.expression[0] for i in resource_issues(bad)}
        assert paths == {path}, (path, paths)


def test_merge_keeps_model_issues_only_on_elements_the_walk_passed() -> None:
    def issue(path: str) -> Issue:
        return Issue("error", "value", path, [path])

    walked = [issue("Patient.name[0].given[1]")]
    modelled = [
        issue("Patient"),  # above the walk's issue: less specific
        issue("Patient.name[0].given[1]"),  # same element
        issue("Patient.name[0].given[1].str"),  # below it: a consequence
        issue("Patient.name[0].family"),  # elsewhere: kept
        issue("Patient.name[10]"),  # not an ancestor despite the common prefix
    ]
    merged = merge(walked, modelled)
    assert [i.expression[0] for i in merged] == [
        "Patient.name[0].given[1]",
        "Patient.name[0].family",
        "Patient.name[10]",
    ]
    assert merge([], modelled) == modelled


def test_absurd_nesting_is_refused_not_crashed() -> None:
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(2000):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    issues = resource_issues({"resourceType": "Basic", "code": {"text": "x"}, "extension": [ext]})
    assert [(i.code, i.expression) for i in issues] == [("too-costly", ["Resource"])]


def test_validation_does_not_modify_the_resource() -> None:
    product = {"resourceType": "MedicinalProduct", "name": [{"productName": "x"}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": bp_observation()}, {"resource": product}],
    }
    before = copy.deepcopy(bundle)
    validate_resource(bundle)  # the model sees a pruned copy without the MedicinalProduct
    assert bundle == before


def test_server_json_reading_with_decimals() -> None:
    """The API reads bodies with parse_float=Decimal so that 1.50 keeps its text."""
    body = json.dumps(bp_observation()).replace('"value": 80.5', '"value": 80.50')
    obs = json.loads(body, parse_float=Decimal)
    assert obs["component"][1]["valueQuantity"]["value"] == Decimal("80.50")
    validate_resource(obs)
