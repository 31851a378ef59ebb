"""The generated element table (structures.json.gz) and its lookup API."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from types import ModuleType

from fhir_server.fhir.structures import element, primitive, structures, type_def, value_set_codes

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "fhir_server" / "fhir" / "definitions"


def test_resource_types_match_the_project_table() -> None:
    listed = json.loads((DEFINITIONS / "resource_types.json").read_text())
    assert structures().resource_types == {t["type"] for t in listed}
    assert len(structures().resource_types) == 146


def test_element_lookup() -> None:
    value = element("Observation", "valueQuantity")
    assert value is not None and value.name == "value[x]" and value.is_choice
    assert element("Observation", "value") is value
    assert element("Observation", "value[x]") is value
    assert "Quantity" in value.types and "SampledData" in value.types
    assert value.json_names()["valueDateTime"] == "dateTime"

    status = element("Observation", "status")
    assert status is not None and (status.min, status.max, status.is_array) == (1, 1, False)
    assert status.binding is not None and status.binding.strength == "required"
    assert status.binding.value_set == "http://hl7.org/fhir/ValueSet/observation-status"

    component = element("Observation", "component")
    assert component is not None and component.types == ("Observation.component",)
    assert component.max is None and component.is_array
    assert type_def("Observation.component") is not None
    assert element("Observation.component", "code") is not None

    nested = element("Questionnaire.item", "item")  # contentReference #Questionnaire.item
    assert nested is not None and nested.types == ("Questionnaire.item",)
    assert nested.content_ref == "Questionnaire.item"

    subject = element("Observation", "subject")
    assert subject is not None and "Patient" in subject.target_profiles
    assert element("Observation", "nope") is None and element("Nope", "id") is None


def test_resource_id_is_typed_id_and_element_id_string() -> None:
    rid = element("Patient", "id")
    assert rid is not None and rid.types == ("id",)
    eid = element("HumanName", "id")
    assert eid is not None and eid.types == ("string",)
    p = primitive("id")
    assert p is not None and p.json == "string" and p.regex == r"[A-Za-z0-9\-\.]{1,64}"
    assert [primitive(n).json for n in ("decimal", "integer", "boolean")] == [  # type: ignore[union-attr]
        "number",
        "integer",
        "boolean",
    ]


def test_required_value_sets() -> None:
    gender = value_set_codes("http://hl7.org/fhir/ValueSet/administrative-gender")
    assert gender == frozenset({"male", "female", "other", "unknown"})
    assert value_set_codes("http://hl7.org/fhir/ValueSet/observation-status|4.0.1") is not None
    # a value set made of imports and whole code systems
    all_types = value_set_codes("http://hl7.org/fhir/ValueSet/all-types")
    assert all_types is not None and {"Patient", "Quantity", "string", "Resource"} <= all_types
    # explicit UCUM concepts need no UCUM code system
    time_units = value_set_codes("http://hl7.org/fhir/ValueSet/units-of-time")
    assert time_units == frozenset({"s", "min", "h", "d", "wk", "mo", "a"})


def test_skipped_bindings_are_only_external_code_systems() -> None:
    skipped = {s["valueSet"]: s for s in structures().skipped_bindings}
    assert set(skipped) == {
        "http://hl7.org/fhir/ValueSet/currencies",
        "http://hl7.org/fhir/ValueSet/mimetypes",
        "http://hl7.org/fhir/ValueSet/ucum-units",
        "http://loinc.org/vs/LL379-9",
    }
    assert "Attachment.contentType" in skipped["http://hl7.org/fhir/ValueSet/mimetypes"]["elements"]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_structures", ROOT / "tools" / "gen_structures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_table_is_up_to_date(shared_data: Path, tmp_path: Path) -> None:
    """Regenerating from the core package gives the committed file, byte for byte."""
    gen = load_generator()
    package = shared_data / "fhir-packages" / "hl7.fhir.r4.core-4.0.1.tgz"
    assert gen.main(["--package", str(package), "--out", str(tmp_path)]) == 0
    fresh = (tmp_path / "structures.json.gz").read_bytes()
    committed = (DEFINITIONS / "structures.json.gz").read_bytes()
    assert gzip.decompress(fresh) == gzip.decompress(committed)
    assert fresh == committed
