"""The model-validation speedups decide exactly as fhir-core's own validators.

Each side runs in its own interpreter (the speedups bind when the model classes are built, so
one process cannot have both): one with `model_speedups.install()`, one with the library as it
ships. Both validate the same resources with the R4B models and report every error's type,
location and message; the two reports must be identical. The resources are crafted cases for
each path of the replaced validators, and real data (official examples, Synthea) with mutated
copies: each top-level element removed, `null` appended to each list, a second type added to
each choice element, and the same inside the first nested object.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

EXAMPLES = "fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz"
SAMPLE_ONE_IN = 32

# Validates resources (JSON lines on stdin) with the R4B models; prints one JSON line each.
RUNNER = """
import json, sys
if sys.argv[1] == "on":
    from fhir_server.fhir.validation import model_speedups
    assert model_speedups.install(), "speedups refused to install"
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
for line in sys.stdin:
    resource = json.loads(line)
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        out = []
    except ValidationError as e:
        out = [[err["type"], list(map(str, err["loc"])), err["msg"]] for err in e.errors()]
    except Exception as e:  # the models raise KeyError & co. on input they cannot map
        out = [["exception", type(e).__name__]]
    print(json.dumps(out))
"""

CRAFTED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "name": [None]},  # null in a list of a complex type
    {"resourceType": "Patient", "name": [{"given": ["a", None]}, None], "telecom": [None]},
    {"resourceType": "Patient", "name": [{"given": [None], "_given": [{"id": "x"}]}]},
    {"resourceType": "Observation", "code": {"text": "x"}},  # required primitive missing
    {  # ... stood in for by an extension: accepted
        "resourceType": "Observation",
        "_status": {"extension": [{"url": "http://x", "valueString": "unknown"}]},
        "code": {"text": "x"},
    },
    {"resourceType": "Observation", "_status": {"id": "no-extension"}, "code": {"text": "x"}},
    {  # two types of one choice element
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueString": "a",
        "valueBoolean": True,
    },
    {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {}},
    {  # a required choice missing, and a nested required primitive missing
        "resourceType": "MedicationRequest",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 1}, "doseRange": {}}]}],
    },
    {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "link": [{"type": "seealso"}]}}],
    },
    {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [None]}],
    },
]

_CHOICE = re.compile(
    r"^(value|effective|onset|abatement|deceased|multipleBirth|medication|occurrence|performed|timing|serviced|subject|reported|asNeeded|born|defaultValue|answer|product|item)[A-Z]\w*$"
)


def mutants(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield resource
    yield from _mutate(resource, lambda m: m)
    nested = next(
        (
            (k, v)
            for k, v in resource.items()
            if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict))
        ),
        None,
    )
    if nested is not None:
        key, value = nested
        inner = value if isinstance(value, dict) else value[0]

        def put(m: dict[str, Any], key: str = key, value: Any = value) -> dict[str, Any]:
            return {**resource, key: m if isinstance(value, dict) else [m, *value[1:]]}

        yield from (put(m) for m in _mutate(inner, lambda m: m))


def _mutate(node: dict[str, Any], wrap: Any) -> Iterator[dict[str, Any]]:
    for key, value in node.items():
        if key == "resourceType":
            continue
        yield wrap({k: v for k, v in node.items() if k != key})
        if isinstance(value, list):
            yield wrap({**node, key: [*value, None]})
        m = _CHOICE.match(key)
        if m and f"{m.group(1)}String" not in node:
            yield wrap({**node, f"{m.group(1)}String": "second type"})


def verdicts(resources: list[dict[str, Any]], mode: str) -> list[Any]:
    lines = "".join(json.dumps(r) + "\n" for r in resources)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, mode],
        input=lines,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_same(resources: list[dict[str, Any]]) -> tuple[int, int]:
    with_speedups = verdicts(resources, "on")
    without = verdicts(resources, "off")
    assert len(with_speedups) == len(without) == len(resources)
    differing = [
        (r, a, b) for r, a, b in zip(resources, with_speedups, without, strict=True) if a != b
    ]
    assert not differing, f"{len(differing)} differ; first: {differing[0]}"
    return len(resources), sum(1 for v in without if v)


def test_crafted_cases_decide_alike() -> None:
    cases = [m for r in CRAFTED for m in mutants(r)]
    _, refused = assert_same(cases)
    assert refused >= len(CRAFTED) - 2  # the cases do reach the failing paths


def test_speedups_install_on_this_fhir_core() -> None:
    """If fhir-core changed under them, they step aside; this says so instead of silently
    losing the speed."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fhir_server.fhir.validation import model_speedups as m; print(m.install())",
        ],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "True", done.stderr


def _corpus(shared_data: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with tarfile.open(shared_data / EXAMPLES, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name == "package.json":
                continue
            if zlib.crc32(name.encode()) % SAMPLE_ONE_IN:
                continue
            fh = tar.extractfile(member)
            assert fh is not None
            out.append(orjson.loads(fh.read()))
    synthea = sorted((shared_data / "synthea-r4").glob("*.json.gz"))
    patient = next(f for f in synthea if f.name[0].isdigit() or "-" in f.name)
    bundle = orjson.loads(gzip.decompress(patient.read_bytes()))
    seen: set[str] = set()
    for entry in bundle["entry"]:  # one resource of each type
        if entry["resource"]["resourceType"] not in seen:
            seen.add(entry["resource"]["resourceType"])
            out.append(entry["resource"])
    return out


def test_real_data_and_mutants_decide_alike(shared_data: Path) -> None:
    from fhir_server.fhir.validation.model import model_types

    resources = [
        json.loads(orjson.dumps(m))  # floats as floats: both sides read the same JSON
        for r in _corpus(shared_data)
        if r.get("resourceType") in model_types()
        for m in mutants(r)
    ]
    total, refused = assert_same(resources)
    print(f"\nmodel speedups: {total} resources, {refused} refused, identical verdicts")
    assert total > 3000 and refused > 500


@pytest.mark.parametrize("mode", ["on", "off"])
def test_runner_reports_errors(mode: str) -> None:
    """The comparison is not vacuous: each side does report the library's errors."""
    (out,) = verdicts([{"resourceType": "Patient", "name": [None]}], mode)
    assert out and out[0][0] == "list_type"


def test_remembered_elements_are_told_apart_by_their_exact_json() -> None:
    """The memo of valid nested elements keys them by their JSON; a decimal's key keeps its text
    and cannot be a string's or a float's."""
    from decimal import Decimal

    from fhir_server.fhir.jsonio import ExactDecimal
    from fhir_server.fhir.validation.model_speedups import _key_default

    values = [Decimal("1.5"), Decimal("1.50"), ExactDecimal("15e-1"), "1.5", "D1.5", 1.5, 1, True]
    keys = {orjson.dumps({"value": v}, default=_key_default) for v in values}
    assert len(keys) == len(values)


def test_an_element_like_a_valid_one_is_still_checked() -> None:
    from fhir_server.fhir.validation.model import model_issues

    def observation(coding: dict[str, Any]) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final", "code": {"coding": [coding]}}

    good = {"system": "http://loinc.org", "code": "8867-4"}
    assert model_issues(observation(good), "Observation", prune=False) == []
    assert model_issues(observation(good), "Observation", prune=False) == []  # remembered
    bad = model_issues(observation({**good, "bogus": 1}), "Observation", prune=False)
    assert [i.expression for i in bad] == [["Observation.code.coding[0].bogus"]]


def test_large_elements_are_not_remembered() -> None:
    import base64

    from fhir_server.fhir.validation import model_speedups
    from fhir_server.fhir.validation.model import model_issues

    data = base64.b64encode(b"x" * 6000).decode()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"text": "a note"},
        "content": [{"attachment": {"contentType": "text/plain", "data": data}}],
    }
    assert model_issues(document, "DocumentReference", prune=False) == []
    remembered = model_speedups._valid_elements
    assert remembered, "nothing was remembered at all"
    assert all(len(text) <= model_speedups.MEMO_MAX_KEY_BYTES for _, text in remembered)
