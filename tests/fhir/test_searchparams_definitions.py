"""Every R4 search parameter definition compiles, and the compiled closures agree with fhirpathpy.

The reference comparison evaluates each search parameter expression (and each composite component,
relative to each repetition of the composite's base) on official R4 examples with both the compiled
closures and fhirpathpy (the R4 model, a resolve() that reads the reference text, `(X as T)`
rewritten to `X.ofType(T)`), and asserts they find the same set of values.
"""

from __future__ import annotations

import decimal
import functools
import json
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.fhir.fhirpath import compile_expression, evaluate
from fhir_server.fhir.searchparams import SearchParamRegistry

# --- every definition compiles ---------------------------------------------------------------------

# SearchParameters of the core package that are examples, not part of the specification's search
# API: `example-extension` declares base Patient but its expression is about DocumentReference.
EXAMPLE_PARAMS = {"example", "example-reference", "example-extension"}
# Parameters the package defines without FHIRPath (framework ones, and the Patient extension
# parameters `age` and `birthOrderBoolean`): nothing to compile, nothing extracted.
WITHOUT_EXPRESSION = {
    "_text", "_content", "_query", "_filter", "_list", "_has", "_type", "age", "birthOrderBoolean",
}  # fmt: skip


def test_every_shipped_definition_compiles() -> None:
    registry = SearchParamRegistry.load_default()
    compiled = 0
    for resource_type in registry.resource_types:
        for param in registry.for_type(resource_type).values():
            if not param.expression:
                assert param.code in WITHOUT_EXPRESSION, param
                continue
            branches = compile_expression(param.expression, resource_type)
            assert branches, f"{resource_type}.{param.code}: {param.expression}"
            for branch in branches:
                for comp in param.components:
                    assert compile_expression(comp.expression, branch.type, resource_type)
            compiled += 1
    assert compiled > 1500  # the 1,400 definitions fan out over their bases and the Resource ones


def test_every_package_definition_compiles(shared_data: Path) -> None:
    package = shared_data / "fhir-packages" / "hl7.fhir.r4.core-4.0.1.tgz"
    types = set(SearchParamRegistry.load_default().resource_types)
    seen = 0
    with tarfile.open(package, "r:gz") as tar:
        for member in tar:
            if not re.search(r"/SearchParameter-[^/]+\.json$", member.name):
                continue
            fh = tar.extractfile(member)
            assert fh is not None
            sp = json.loads(fh.read())
            seen += 1
            bases = [
                b for b in sp.get("base") or () if b in types or b in ("Resource", "DomainResource")
            ]
            if not sp.get("expression") or not bases:
                continue  # _text, _content, _query, _filter, Patient.age, ... (no FHIRPath)
            for base in bases:
                context = "Resource" if base in ("Resource", "DomainResource") else base
                branches = compile_expression(sp["expression"], context)
                assert branches or sp["id"] in EXAMPLE_PARAMS, sp["id"]
                for comp in sp.get("component") or ():
                    for branch in branches:
                        compile_expression(comp["expression"], branch.type, context)
    assert seen == 1400


# --- reference comparison with fhirpathpy ----------------------------------------------------------

_AS = re.compile(r"\(([^()]+?) as (\w+)\)")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
# fhirpathpy 2.2.4 has no hasExtension(); it is covered by the unit tests above.
_REFERENCE_GAPS = ("hasExtension(",)


def _reference_expression(expression: str, resource_type: str) -> str:
    expression = _AS.sub(r"\1.ofType(\2)", expression).replace("as(DateTime)", "as(dateTime)")
    # fhirpathpy does not treat Resource/DomainResource as the type of every resource.
    return re.sub(r"\b(Resource|DomainResource)\.", resource_type + ".", expression)


def _resolver(resource: dict[str, Any]) -> dict[str, Any]:
    from fhirpathpy.engine.nodes import ResourceNode

    def resolve(inputs: list[Any]) -> list[Any]:
        out = []
        for ref in inputs:
            found = None
            text = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(text, str) and text.startswith("#"):
                found = next(
                    (
                        c["resourceType"]
                        for c in resource.get("contained", ())
                        if c.get("id") == text[1:]
                    ),
                    None,
                )
            elif isinstance(text, str):
                parts = text.split("/")
                parts = parts[: parts.index("_history")] if "_history" in parts else parts
                found = parts[-2] if len(parts) >= 2 and parts[-2][:1].isupper() else None
            if found is None and isinstance(ref, dict) and isinstance(ref.get("type"), str):
                found = ref["type"].rsplit("/", 1)[-1]
            if found:
                out.append(ResourceNode.create_node({"resourceType": found}))  # type: ignore[no-untyped-call]
        return out

    return {"userInvocationTable": {"resolve": {"fn": resolve, "arity": {0: []}}}}


def _canonical(value: Any) -> Any:
    """fhirpathpy returns decimals as Decimal or text: compare numbers by value."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | decimal.Decimal) or (
        isinstance(value, str) and _NUMBER.match(value)
    ):
        return repr(float(value))
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _key(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, default=str)


@functools.cache
def _parsed(expression: str) -> Any:
    from fhirpathpy.parser import parse as fhirpathpy_parse

    return fhirpathpy_parse(expression)  # type: ignore[no-untyped-call]


def _examples(shared_data: Path, every: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """A deterministic 1-in-`every` sample (by a hash of the file name), read in one pass."""
    types = set(SearchParamRegistry.load_default().resource_types)
    # Stream mode: extracting members out of order would re-inflate the archive each time.
    with tarfile.open(
        shared_data / "fhir-packages" / "hl7.fhir.r4.examples-4.0.1.tgz", "r|gz"
    ) as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".json")):
                continue
            if zlib.crc32(member.name.encode()) % every:
                continue
            fh = tar.extractfile(member)
            resource = json.loads(fh.read()) if fh is not None else None
            if isinstance(resource, dict) and resource.get("resourceType") in types:
                yield member.name, resource


def _compare(resource: dict[str, Any], registry: SearchParamRegistry) -> tuple[int, list[str]]:
    import fhirpathpy
    from fhirpathpy.engine.nodes import ResourceNode
    from fhirpathpy.models import models

    model, options, resource_type = models["r4"], _resolver(resource), resource["resourceType"]
    checked, failures = 0, []

    def check(label: str, mine: list[Any], expression: str, focus: Any, base: str | None) -> None:
        nonlocal checked
        # fhirpathpy.evaluate() without re-parsing each time (parsing is 85% of its cost).
        node = focus if base is None else ResourceNode.create_node(focus, base)  # type: ignore[no-untyped-call]
        theirs = fhirpathpy.apply_parsed_path(  # type: ignore[no-untyped-call]
            node, _parsed(expression), {"resource": resource}, model, options
        )
        checked += 1
        if {_key(v) for v in mine} != {_key(v) for v in theirs}:
            failures.append(f"{resource_type}/{resource.get('id')} {label}: {expression}")

    for code, param in registry.for_type(resource_type).items():
        if not param.expression or any(gap in param.expression for gap in _REFERENCE_GAPS):
            continue
        branches = compile_expression(param.expression, resource_type)
        found = evaluate(branches, resource)
        check(
            code,
            [v for _, v in found],
            _reference_expression(param.expression, resource_type),
            resource,
            None,
        )
        for branch in branches if param.components else ():
            for item in branch.fn(resource, resource):
                base = branch.type if branch.type != resource_type else None
                for comp in param.components:
                    mine = [
                        v
                        for _, v in evaluate(
                            compile_expression(comp.expression, branch.type, resource_type),
                            resource,
                            item,
                        )
                    ]
                    check(
                        f"{code}.{comp.code}",
                        mine,
                        _reference_expression(comp.expression, resource_type),
                        item,
                        base,
                    )
    return checked, failures


def test_matches_fhirpathpy_on_sampled_examples(shared_data: Path) -> None:
    registry = SearchParamRegistry.load_default()
    checked, failures = 0, []
    for _, resource in _examples(shared_data, every=3):
        n, bad = _compare(resource, registry)
        checked += n
        failures += bad
    assert checked > 40_000
    assert failures == []


@pytest.mark.slow  # the full set: run with `pytest -m slow`
def test_matches_fhirpathpy_on_all_examples(shared_data: Path) -> None:
    registry = SearchParamRegistry.load_default()
    failures = [
        f
        for _, resource in _examples(shared_data, every=1)
        for f in _compare(resource, registry)[1]
    ]
    assert failures == []
