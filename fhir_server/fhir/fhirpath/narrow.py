"""Text-level helpers for multi-base expressions (`Account.subject | AdverseEvent.subject | ...`)."""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["narrow_expression", "split_union"]

_ROOT = re.compile(r"[\s(]*([A-Za-z_][A-Za-z0-9_]*)")


def split_union(expression: str) -> list[str]:
    """The terms of a top-level `|` union (outside parentheses and string literals)."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def narrow_expression(expression: str, base: str, resource_types: Collection[str]) -> str:
    """Drop the union terms rooted at another resource type than `base` (Resource-rooted ones stay).

    Only presentation: the compiler gives such terms no branches for `base` anyway.
    """
    generic = {base, "Resource", "DomainResource"}
    kept = []
    for term in split_union(expression):
        match = _ROOT.match(term)
        root = match.group(1) if match else ""
        if root in generic or root not in resource_types:
            kept.append(term)
    return " | ".join(kept)
