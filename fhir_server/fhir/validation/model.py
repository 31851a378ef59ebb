"""Validation through the fhir.resources R4B models, with pydantic errors turned into FHIR issues."""

from __future__ import annotations

import functools
import importlib.resources
import re
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from fhir_server.errors import Issue
from fhir_server.fhir.validation import model_speedups

_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9]*")
# pydantic error types that mean "wrong shape" rather than "wrong value"
_STRUCTURE = {
    "list_type",
    "dict_type",
    "model_type",
    "model_validation_format",
    "model_attributes_type",
}
_PRUNED = object()


@functools.cache
def model_types() -> frozenset[str]:
    """R4 resource types that have an R4B model (128 of the 146)."""
    raw = importlib.resources.files("fhir_server.fhir").joinpath("definitions/resource_types.json")
    return frozenset(t["type"] for t in orjson.loads(raw.read_bytes()) if t["r4b_model"])


@functools.cache
def model_class(resource_type: str) -> type[BaseModel]:
    # Imported on first write: fhir.resources costs ~0.2 s to import, which reads never need.
    # The speedups go in first: pydantic binds the validators they replace as classes are built.
    model_speedups.install()
    from fhir.resources.R4B import get_fhir_model_class

    cls: type[BaseModel] = get_fhir_model_class(resource_type)
    return cls


def model_issues(resource: dict[str, Any], root: str, prune: bool) -> list[Issue]:
    """Issues the R4B model finds in `resource` (whose type must have a model).

    `prune` drops nested resources without a model (R4-only or unknown types) before the model
    sees them: the model cannot parse them at all, and the walk has already checked them.
    """
    data = prune_foreign(resource, model_types()) if prune else resource
    try:
        model_class(resource["resourceType"]).model_validate(data)
    except ValidationError as e:
        return [translate(err, root) for err in e.errors(include_url=False)]
    except Exception as e:  # the models raise KeyError & co. on input they cannot map at all
        return [
            Issue("error", "invalid", f"The R4B model cannot read this resource: {e!r}", [root])
        ]
    return []


def translate(err: Any, root: str) -> Issue:
    loc: tuple[int | str, ...] = err.get("loc", ())
    path = loc_path(root, loc)
    etype: str = err.get("type", "")
    msg: str = err.get("msg", "")
    names = [x for x in loc if isinstance(x, str) and _NAME.fullmatch(x)]
    if etype == "extra_forbidden" and loc and isinstance(loc[-1], str):
        # keep an unknown `_name` as written: it is not the extension of a known `name`
        path = f"{loc_path(root, loc[:-1])}.{loc[-1]}"
        return Issue("error", "structure", f"Unknown element '{loc[-1]}'", [path])
    if etype == "missing" or etype.endswith(".missing"):
        field = err.get("ctx", {}).get("field_name") or (names[-1] if names else "?")
        if not path.endswith("." + field):
            path = f"{path}.{field}"
        return Issue("error", "required", f"Missing required element '{field}'", [path])
    msg = msg.removeprefix("Value error, ")
    value = err.get("input")
    if (isinstance(value, str | int | float) and not isinstance(value, bool)) or value is None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        msg = f"{msg} (value: {shown})"
    return Issue("error", "structure" if etype in _STRUCTURE else "value", msg, [path])


def loc_path(root: str, loc: tuple[int | str, ...]) -> str:
    """pydantic loc -> FHIRPath-style path; `_given` (primitive extensions) maps to `given`."""
    parts = [root]
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item != "root" and _NAME.fullmatch(item):  # drop pydantic's own segments
            parts.append("." + item.lstrip("_"))
    return "".join(parts)


def prune_foreign(node: Any, keep: frozenset[str], top: bool = True) -> Any:
    """A copy of `node` without nested resources whose type is not in `keep` (copies only paths
    that change)."""
    if isinstance(node, dict):
        if not top and "resourceType" in node and node["resourceType"] not in keep:
            return _PRUNED
        out: dict[str, Any] = {}
        changed = False
        for k, v in node.items():
            nv = prune_foreign(v, keep, False)
            changed = changed or nv is not v
            if nv is not _PRUNED and nv != []:
                out[k] = nv
        return out if changed else node
    if isinstance(node, list):
        items = [prune_foreign(v, keep, False) for v in node]
        if all(a is b for a, b in zip(items, node, strict=True)):
            return node
        return [v for v in items if v is not _PRUNED]
    return node
