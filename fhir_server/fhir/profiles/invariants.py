"""Profile invariants (ElementDefinition.constraint) through the project's FHIRPath compiler.

Only constraints whose expression the compiler accepts are evaluated; the others are skipped (the
compiler covers the subset search parameters use, plus `A implies B`, rewritten here as
`(A).not() or (B)`, which agrees with FHIRPath wherever the result is not empty). A constraint
fails when its expression yields `false`; an empty result is not a failure.
"""

from __future__ import annotations

from typing import Any

from fhir_server.fhir.fhirpath import Branch, compile_expression

__all__ = ["SKIPPED_KEYS", "check", "compiled", "rewrite_implies"]

# Constraints every element carries whose meaning is already checked by the base validation.
SKIPPED_KEYS = frozenset({"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "dom-6"})

_cache: dict[tuple[str, str, str], tuple[Branch, ...] | None] = {}


def _top_level(expr: str, word: str) -> list[int]:
    """Positions of ` word ` outside quotes and brackets."""
    hits: list[int] = []
    depth, quote, i = 0, "", 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and expr.startswith(f" {word} ", i):
            hits.append(i)
        i += 1
    return hits


def rewrite_implies(expr: str) -> str:
    hits = _top_level(expr, "implies")
    if len(hits) != 1:
        return expr
    left, right = expr[: hits[0]], expr[hits[0] + len(" implies ") :]
    return f"({left.strip()}).not() or ({right.strip()})"


def compiled(expr: str, context_type: str, resource_type: str) -> tuple[Branch, ...] | None:
    key = (expr, context_type, resource_type)
    if key not in _cache:
        try:
            _cache[key] = compile_expression(rewrite_implies(expr), context_type, resource_type)
        except Exception:  # outside the supported subset (or an unknown type): not evaluated
            _cache[key] = None
    return _cache[key]


def check(expr: str, context_type: str, value: Any, resource: Any) -> bool | None:
    """False when the constraint fails on `value`; None when it cannot be evaluated."""
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    branches = compiled(expr, context_type, rtype if isinstance(rtype, str) else context_type)
    if branches is None:
        return None
    try:
        results = [v for b in branches for v in b.fn(value, resource)]
    except Exception:  # an expression the compiler accepted but this data trips: not evaluated
        return None
    if not results:
        return True
    return not all(r is False for r in results)
