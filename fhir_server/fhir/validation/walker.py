"""The table-driven walk over a resource's JSON: structure, JSON types, formats, required codes.

Paths are built only for objects the walk descends into and for issues, never for primitives that
pass, because this runs on every write.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue
from fhir_server.fhir.validation.schema import (
    COMPLEX,
    OBJ,
    OBJS,
    PRIM,
    PRIMITIVE,
    RESOURCE,
    SKIP,
    XHTML,
    Schema,
    Slot,
    json_kind,
    schema,
)


class Walk:
    """The state of one validation: issues found, and whether a nested resource has no R4B model."""

    __slots__ = ("aborted", "element", "foreign", "issues", "model_types", "resource_types")

    def __init__(self, resource_types: frozenset[str], model_types: frozenset[str]) -> None:
        self.issues: list[Issue] = []
        self.foreign = False
        self.aborted = False  # the walk gave up (nesting too deep); nothing else should run
        self.resource_types = resource_types
        self.model_types = model_types
        element = schema("Element")
        assert element is not None
        self.element = element

    def add(self, code: str, diagnostics: str, path: str) -> None:
        self.issues.append(Issue("error", code, diagnostics, [path]))


def walk_resource(res: Any, path: str, w: Walk, nested: bool) -> None:
    """A resource at `path`; the root resource has path "" and is then named by its type."""
    if type(res) is not dict or not res:
        bad_object(res, path or "Resource", w)
        return
    rt = res.get("resourceType")
    if type(rt) is not str or rt not in w.resource_types:
        shown = repr(rt) if len(repr(rt)) <= 60 else repr(rt)[:57] + "..."
        where = f"{path}.resourceType" if path else "resourceType"
        w.add("invalid", f"Unknown or missing resourceType {shown}: not an R4 resource type", where)
        w.foreign = w.foreign or nested
        return
    if nested and rt not in w.model_types:
        w.foreign = True
    s = schema(rt)
    assert s is not None
    walk_object(res, s, path or rt, w)


def walk_object(obj: dict[str, Any], s: Schema, path: str, w: Walk) -> None:
    slots = s.slots
    choices: set[str] | None = None
    for key, val in obj.items():
        slot = slots.get(key)
        if slot is None:
            if key[:1] == "_":
                primitive_extension(obj, key, val, s, path, w)
            else:
                w.add("structure", f"Unknown element '{key}'", f"{path}.{key}")
            continue
        if slot.choice is not None:
            if choices is None:
                choices = {slot.choice}
            elif slot.choice in choices:
                w.add("structure", f"More than one type given for {slot.choice}", f"{path}.{key}")
            else:
                choices.add(slot.choice)
        # The common shapes are handled inline; anything unusual goes to `slow_value`.
        op = slot.op
        if op == PRIM:
            if slot.check(val) is not None:
                slow_value(obj, key, val, slot, path, w)
        elif op == OBJ:
            if type(val) is dict and val:
                walk_object(val, slot.child, f"{path}.{key}", w)
            else:
                slow_value(obj, key, val, slot, path, w)
        elif op == OBJS and type(val) is list and val and slot.max is None:
            child = slot.child
            for i, item in enumerate(val):
                if type(item) is dict and item:
                    walk_object(item, child, f"{path}.{key}[{i}]", w)
                else:
                    bad_object(item, f"{path}.{key}[{i}]", w)
        else:
            slow_value(obj, key, val, slot, path, w)
    for name, keys, min_n in s.required:
        for k in keys:
            if k in obj:
                if min_n > 1 and type(obj[k]) is list and len(obj[k]) < min_n:
                    w.add("required", f"At least {min_n} '{name}' required", f"{path}.{k}")
                break
        else:
            w.add("required", f"Missing required element '{name}'", f"{path}.{name}")
    if s.name == "Extension" and (any(_is_value(k) for k in obj) == ("extension" in obj)):
        w.add("invariant", "ext-1: an extension has either a value or extensions, not both", path)


def _is_value(key: str) -> bool:
    """`valueX`, or `_valueX` (a primitive value carried by its id or extensions only)."""
    return key[:5] == "value" or key[:6] == "_value"


def slow_value(obj: dict[str, Any], key: str, val: Any, slot: Slot, path: str, w: Walk) -> None:
    """Everything but a valid single primitive / object or a plain array of objects."""
    here = f"{path}.{key}"
    if slot.array:
        if type(val) is not list:
            if val is None:
                w.add("invalid", "null is not allowed", here)
            else:
                w.add("structure", f"'{key}' must be an array", here)
            return
        if not val:
            w.add("invalid", "Empty arrays are not allowed", here)
            return
        if slot.kind == PRIMITIVE:
            primitive_array(obj, key, val, slot, path, w)
            return
        if slot.max is not None and len(val) > slot.max:
            w.add("structure", f"At most {slot.max} '{key}' allowed", here)
        for i, item in enumerate(val):
            value(item, slot, f"{here}[{i}]", w)
    elif type(val) is list:
        w.add("structure", f"'{key}' must be a single value, not an array", here)
    elif slot.kind == PRIMITIVE:
        bad = slot.check(val)
        if bad is not None:
            w.add(bad[0], bad[1], here)
    elif slot.kind != SKIP:
        value(val, slot, here, w)


def value(val: Any, slot: Slot, path: str, w: Walk) -> None:
    """A non-primitive value (or an array item of one) at `path`."""
    kind = slot.kind
    if kind == COMPLEX:
        if type(val) is dict and val:
            walk_object(val, slot.child, path, w)
        else:
            bad_object(val, path, w)
    elif kind == RESOURCE:
        walk_resource(val, path, w, nested=True)
    elif kind == XHTML:
        # The models accept any string here; txt-1/txt-3 require an XHTML <div> element.
        if type(val) is not str:
            w.add("value", f"xhtml must be a JSON string, not {json_kind(val)}", path)
        elif not val.startswith("<div") and not val.lstrip().startswith("<div"):
            w.add("value", "Narrative div must be an XHTML <div> element", path)


def primitive_array(
    obj: dict[str, Any], key: str, val: list[Any], slot: Slot, path: str, w: Walk
) -> None:
    check = slot.check
    ext: Any = None
    for i, item in enumerate(val):
        if item is None:
            # null only keeps the positions aligned with a `_key` entry that carries extensions
            if ext is None:
                ext = obj.get("_" + key)
            if type(ext) is not list or i >= len(ext) or ext[i] is None:
                w.add("invalid", "null is not allowed", f"{path}.{key}[{i}]")
            continue
        bad = check(item)
        if bad is not None:
            w.add(bad[0], bad[1], f"{path}.{key}[{i}]")


def primitive_extension(
    obj: dict[str, Any], key: str, val: Any, s: Schema, path: str, w: Walk
) -> None:
    """`_name`: the id/extensions of primitive `name` (an array of them for a repeating one)."""
    base = key[1:]
    slot = s.slots.get(base)
    if slot is None or slot.kind != PRIMITIVE:
        w.add("structure", f"Unknown element '{key}'", f"{path}.{key}")
        return
    p = f"{path}.{base}"
    if not slot.array:
        if type(val) is dict and val:
            walk_object(val, w.element, p, w)
        else:
            bad_object(val, p, w)
        return
    if type(val) is not list or not val:
        w.add("structure", f"'{key}' must be a non-empty array", f"{path}.{key}")
        return
    values = obj.get(base)
    if values is not None and (type(values) is not list or len(values) != len(val)):
        w.add("structure", f"'{key}' must have one entry per '{base}' value", f"{path}.{key}")
        values = None
    for i, item in enumerate(val):
        if item is None:
            if values is None or values[i] is None:
                w.add("invalid", "null is not allowed", f"{p}[{i}]")
        elif type(item) is dict and item:
            walk_object(item, w.element, f"{p}[{i}]", w)
        else:
            bad_object(item, f"{p}[{i}]", w)


def bad_object(val: Any, path: str, w: Walk) -> None:
    if val is None:
        w.add("invalid", "null is not allowed", path)
    elif type(val) is dict:
        w.add("invalid", "Empty objects are not allowed", path)
    else:
        w.add("structure", f"Expected a JSON object, not {json_kind(val)}", path)
