"""Validation of every resource written to the server, against FHIR R4 (4.0.1).

`validate_resource(resource)` raises `Unprocessable` (422) carrying every issue found; each issue
names its element with a FHIRPath-style path (`Observation.component[1].valueQuantity.value`,
`Bundle.entry[0].resource.status`). `resource_issues(resource)` returns the same issues without
raising. Two validators run:

1. The table-driven walk (`walker`, over `fhir/definitions/structures.json.gz`), for all 146 R4
   types: unknown elements, cardinality, array vs single value, one type per choice element, JSON
   kinds of primitives (a decimal must be a JSON number, an integer a JSON integer in range, a
   boolean a JSON boolean, a string a JSON string; the models coerce), primitive formats (the core
   regexes: id, date, dateTime, code, ...), required `code` bindings whose value set can be
   expanded from the core package, no null / empty string / empty object / empty array, `_name`
   primitive extensions, a Narrative div that is a <div>, and contained / Bundle.entry / Parameters
   resources recursively.
2. The fhir.resources R4B model (`model`), the declared validator, for the 128 types that have one.
   The 18 R4-only types without an R4B model (EffectEvidenceSynthesis, RiskEvidenceSynthesis, the
   MedicinalProduct* and Substance{NucleicAcid,Polymer,Protein,ReferenceInformation,
   SourceMaterial,Specification} types) get the walk alone, which is a complete structural check,
   so they can still be stored. Nested resources of those types inside a Bundle or `contained` are
   likewise checked by the walk only (they are removed from the copy the model sees).

Where both report the same element, the walk's (more specific) issue is kept. Invariants (FHIRPath
constraints) and profiles (`meta.profile`) are not checked here.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue, Unprocessable
from fhir_server.fhir.structures import structures
from fhir_server.fhir.validation.model import model_issues, model_types
from fhir_server.fhir.validation.walker import Walk, walk_resource

__all__ = ["merge", "resource_issues", "validate_resource", "walk", "walk_issues"]


def validate_resource(resource: dict[str, Any]) -> None:
    """Raise `Unprocessable` with all issues unless `resource` is valid R4."""
    issues = resource_issues(resource)
    if issues:
        first = issues[0]
        where = f" at {first.expression[0]}" if first.expression else ""
        more = f" (and {len(issues) - 1} more issues)" if len(issues) > 1 else ""
        raise Unprocessable(
            f"Invalid {_type_name(resource)}: {first.diagnostics}{where}{more}", issues=issues
        )


def resource_issues(resource: Any) -> list[Issue]:
    """All issues of `resource`: the walk, then the R4B model's issues the walk did not cover."""
    w = walk(resource)
    rt = resource.get("resourceType") if isinstance(resource, dict) else None
    if w.aborted or not isinstance(rt, str) or rt not in w.model_types:
        return w.issues
    return merge(w.issues, model_issues(resource, rt, prune=w.foreign))


def walk_issues(resource: Any) -> list[Issue]:
    """Issues of the walk alone (no model); for measurements and the 18 R4-only types."""
    return walk(resource).issues


def walk(resource: Any) -> Walk:
    w = Walk(structures().resource_types, model_types())
    try:
        walk_resource(resource, "", w, nested=False)
    except RecursionError:  # JSON nested deeper than any real resource: refuse, don't crash
        w.add("too-costly", "The resource is nested too deeply to validate", "Resource")
        w.aborted = True
    return w


def merge(walked: list[Issue], modelled: list[Issue]) -> list[Issue]:
    """Walk issues plus the model issues on elements the walk found nothing wrong with.

    A model issue is dropped when a walk issue sits at the same path, below it (the walk's is
    more specific, e.g. a model error on the whole resource for two `value[x]` types) or above it
    (the model's is a consequence, e.g. pydantic's union-member segments under a bad primitive).
    """
    if not walked:
        return modelled
    walk_paths = {p for issue in walked for p in issue.expression}
    above = {a for p in walk_paths for a in _ancestors(p)}
    return walked + [
        m
        for m in modelled
        if not any(p in above or walk_paths.intersection(_ancestors(p)) for p in m.expression)
    ]


def _ancestors(path: str) -> list[str]:
    """`A.b[1].c` -> [`A.b[1].c`, `A.b[1]`, `A.b`, `A`]."""
    out = [path]
    while True:
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return out
        path = path[:cut]
        out.append(path)


def _type_name(resource: Any) -> str:
    rt = resource.get("resourceType") if isinstance(resource, dict) else None
    return rt if isinstance(rt, str) and len(rt) < 64 else "resource"
