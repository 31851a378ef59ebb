"""Runtime pieces of compiled expressions: small closures over a resource's JSON dict.

A step maps a collection to a collection (`(items, resource) -> items`); a branch function maps a
focus item (`$this`) to a collection (`(this, resource) -> items`). Nothing here looks at the
expression any more: the compiler has already resolved names, choice keys and types.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

Items = list[Any]
Step = Callable[[Items, Any], Items]
Fn = Callable[[Any, Any], Items]

# `Type/id`, `Type/id/_history/v`, or any URL ending so: the type is the segment before the id.
_REFERENCE: Final = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def _values(v: Any) -> Items:
    """A JSON member as a collection: arrays of primitives may hold nulls (extension-only items)."""
    if v.__class__ is list:
        return v if None not in v else [x for x in v if x is not None]
    return [v]


def field_fn(key: str) -> Fn:
    """`$this.key`: the common first step, specialised for speed."""

    def run(this: Any, resource: Any) -> Items:
        v = this.get(key) if this.__class__ is dict else None
        return [] if v is None else _values(v)

    return run


def fields_step(keys: Sequence[str]) -> Step:
    """Member access through one or more JSON keys, flattening arrays; non-objects yield nothing."""
    chain = tuple(keys)

    def run(items: Items, resource: Any) -> Items:
        for key in chain:
            out: Items = []
            for item in items:
                if item.__class__ is dict:
                    v = item.get(key)
                    if v is not None:
                        if v.__class__ is not list:
                            out.append(v)
                        elif None in v:
                            out.extend(x for x in v if x is not None)
                        else:
                            out.extend(v)
            if not out:
                return out
            items = out
        return items

    return run


def link(start: Fn | None, steps: Sequence[Step]) -> Fn:
    """Compose a start (default: the focus itself) with steps, stopping early on empty."""
    first: Fn = start if start is not None else (lambda this, resource: [this])
    if not steps:
        return first
    chain = tuple(steps)

    def run(this: Any, resource: Any) -> Items:
        items = first(this, resource)
        for step in chain:
            if not items:
                return items
            items = step(items, resource)
        return items

    return run


def union_fn(fns: Sequence[Fn]) -> Fn:
    if len(fns) == 1:
        return fns[0]
    parts = tuple(fns)

    def run(this: Any, resource: Any) -> Items:
        out: Items = []
        for fn in parts:
            out.extend(fn(this, resource))
        return out

    return run


def const_fn(values: Items) -> Fn:
    frozen = tuple(values)
    return lambda this, resource: list(frozen)


def where_step(predicate: Fn) -> Step:
    def run(items: Items, resource: Any) -> Items:
        return [item for item in items if truth(predicate(item, resource)) is True]

    return run


def resource_type_step(resource_type: str) -> Step:
    """`ofType(T)` on values of the abstract type Resource (contained, Bundle.entry.resource)."""

    def run(items: Items, resource: Any) -> Items:
        return [i for i in items if i.__class__ is dict and i.get("resourceType") == resource_type]

    return run


def extension_step(url: str) -> Step:
    def run(items: Items, resource: Any) -> Items:
        out: Items = []
        for item in items:
            if item.__class__ is dict:
                for ext in item.get("extension") or ():
                    if ext.__class__ is dict and ext.get("url") == url:
                        out.append(ext)
        return out

    return run


def slice_step(index: int) -> Step:
    return lambda items, resource: items[index : index + 1]


def positional_fns(fns: Sequence[Fn], index: int) -> list[Fn]:
    """`[index]` / `first()` over a union of typed branches: item `index` of their concatenation."""
    parts = tuple(fns)

    def make(position: int) -> Fn:
        def run(this: Any, resource: Any) -> Items:
            before = sum(len(fn(this, resource)) for fn in parts[:position])
            mine = parts[position](this, resource)
            k = index - before
            return [mine[k]] if 0 <= k < len(mine) else []

        return run

    return [make(i) for i in range(len(parts))]


def truth(items: Items) -> bool | None:
    """FHIRPath singleton evaluation as a boolean: empty -> None, one non-boolean item -> True."""
    if len(items) != 1:
        return None
    value = items[0]
    return value if value.__class__ is bool else True


def equals(left: Items, right: Items) -> bool:
    if len(left) != len(right):
        return False
    return all(_equal(a, b) for a, b in zip(left, right, strict=True))


def _equal(a: Any, b: Any) -> bool:
    # Python's True == 1 is not FHIRPath's: booleans only equal booleans.
    if (a.__class__ is bool) != (b.__class__ is bool):
        return False
    return bool(a == b)


def referenced_type(reference: Any, resource: Any) -> str | None:
    """The resource type a Reference points at, as `resolve()` would find it (no I/O).

    `#id` looks in the resource's `contained`; other references are read from their text, falling
    back on `Reference.type`; `urn:uuid:` and other opaque URIs give no type.
    """
    if reference.__class__ is not dict:
        return None
    ref = reference.get("reference")
    if ref.__class__ is str:
        if ref.startswith("#"):
            for item in resource.get("contained") or ():
                if item.__class__ is dict and item.get("id") == ref[1:]:
                    found = item.get("resourceType")
                    return found if found.__class__ is str else None
            return None
        match = _REFERENCE.search(ref)
        if match is not None:
            return match.group(1)
    declared = reference.get("type")  # a type name or its StructureDefinition URL
    return declared.rsplit("/", 1)[-1] if declared.__class__ is str else None
