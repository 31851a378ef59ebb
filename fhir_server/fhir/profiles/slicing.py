"""Slicing: which slice an element's value belongs to, from `value` and `pattern` discriminators.

A discriminator names a path below the slice (`code.coding.code`, `url`, `$this`); the slice's
fixed[x] or pattern[x] at that path (also inside slices on the way, as bp fixes its component
codes in a slice of `code.coding`), or for extensions the profile of the slice's type, is what the
value must carry. Other discriminator types (type, profile, exists) and paths with functions are
not evaluated: `matches` answers None and the slices go unchecked rather than misjudged.
"""

from __future__ import annotations

from typing import Any

from fhir_server.fhir.profiles.elements import Node, fixed_or_pattern

__all__ = ["matches", "matches_pattern"]


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern[x] semantics: every element of the pattern is present in the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches_pattern(value[k], p) for k, p in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(v, p) for v in items) for p in pattern)
    return bool(value == pattern)


def _navigate(value: Any, path: str) -> list[Any] | None:
    if path == "$this":
        return [value]
    if "(" in path:
        return None
    current = [value]
    for part in path.split("."):
        nxt: list[Any] = []
        for v in current:
            if isinstance(v, dict) and part in v:
                x = v[part]
                nxt += x if isinstance(x, list) else [x]
        current = nxt
    return current


def _targets(node: Node, path: str) -> list[Node]:
    """The nodes at `path` below a slice, also through slices on the way (bp's component slices
    fix their code in a slice of `code.coding`)."""
    if path == "$this":
        return [node]
    nodes = [node]
    for part in path.split("."):
        found: list[Node] = []
        for n in nodes:
            for owner in (n, *n.slices.values()):
                child = owner.children.get(part)
                if child is not None:
                    found += [child, *child.slices.values()]
        nodes = found
    return nodes


def _discriminator_value(s: Node, path: str) -> tuple[str, Any] | None:
    for target in _targets(s, path):
        fp = fixed_or_pattern(target.elem)
        if fp is not None:
            return fp
    if path == "url" and s.elem:
        profiles = [p for t in s.elem.get("type") or [] for p in t.get("profile") or []]
        if profiles:
            return ("fixed", profiles[0])
    return None


def matches(s: Node, discs: list[dict[str, Any]], value: Any) -> bool | None:
    """Whether `value` belongs to slice `s`; None when a discriminator cannot be evaluated."""
    for d in discs:
        path = str(d.get("path"))
        if d.get("type") not in ("value", "pattern"):
            return None
        fp = _discriminator_value(s, path)
        actual = _navigate(value, path)
        if fp is None or actual is None:
            return None
        kind, expected = fp
        if kind == "fixed" and not any(a == expected for a in actual):
            return False
        if kind == "pattern" and not any(matches_pattern(a, expected) for a in actual):
            return False
    return True
