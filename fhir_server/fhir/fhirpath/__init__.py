"""A compiler from the FHIRPath subset used by search parameters to fast Python closures.

`compile_expression("Observation.value as Quantity", "Observation")` returns typed branches; each
branch's `fn(this, resource)` yields raw JSON values (dicts, strings, numbers, booleans) of one known
FHIR type. Types come from the R4 element table (`definitions/element_types.json`): a choice element
expands to one branch per allowed type with its JSON key (`valueQuantity`), so the type of every value
is known without looking at it, except for the abstract `Resource` (contained resources,
`Bundle.entry.resource`), whose values carry `resourceType`, and `Extension`, whose `value[x]` key
tells its type (extraction reads both at run time).

Supported: paths, choice elements, `$this`, `%resource`, string/boolean/number literals, `[n]`,
`|`, `=`, `!=`, `and`, `or`, `is T`, `as T`, and the functions where(), exists(), empty(), not(),
first(), as(), ofType(), is(), extension(url), hasExtension(url), plus `resolve() is T` inside a
predicate (decided from the reference text and `contained`, never by I/O). Anything else raises
FhirPathError (a ValueError) at compile time. Deviations from FHIRPath, on purpose: `X as T` on a
collection filters it like `ofType(T)` instead of failing on more than one item (the official
expressions rely on it), and type names fall back to a case-insensitive match (`DateTime`).
"""

from __future__ import annotations

import functools
from typing import Any

from fhir_server.fhir.fhirpath.compiler import SUPPORTED_FUNCTIONS, Branch, compile_node
from fhir_server.fhir.fhirpath.model import ElementModel, load_model
from fhir_server.fhir.fhirpath.narrow import narrow_expression, split_union
from fhir_server.fhir.fhirpath.parser import FhirPathError, parse
from fhir_server.fhir.fhirpath.steps import Fn

__all__ = [
    "SUPPORTED_FUNCTIONS",
    "Branch",
    "ElementModel",
    "FhirPathError",
    "Fn",
    "compile_expression",
    "evaluate",
    "load_model",
    "narrow_expression",
    "split_union",
]


@functools.lru_cache(maxsize=8192)
def compile_expression(
    expression: str, context_type: str, resource_type: str | None = None
) -> tuple[Branch, ...]:
    """Typed branches of `expression` for a focus of `context_type` in a `resource_type` resource.

    `resource_type` (the type of `%resource`) defaults to `context_type`. Raises FhirPathError.
    """
    model = load_model()
    for name in (context_type, resource_type or context_type):
        if name not in model.types:
            raise FhirPathError(f"unknown type {name!r}")
    node = parse(expression)
    return compile_node(node, model, context_type, resource_type or context_type, expression)


def evaluate(
    branches: tuple[Branch, ...], resource: Any, focus: Any = None
) -> list[tuple[str, Any]]:
    """(FHIR type, value) pairs of compiled branches (for tests and tools; extraction uses `fn`)."""
    this = resource if focus is None else focus
    return [(b.type, value) for b in branches for value in b.fn(this, resource)]
