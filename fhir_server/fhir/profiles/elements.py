"""A profile's elements as a tree: children by element name, slices by slice name.

Built from a StructureDefinition's snapshot, or from its differential laid over its base profile's
elements (a snapshot by element id, enough to validate: the base resource's own rules are checked
by `fhir/validation` already). Element ids name the slices (`Observation.component:SystolicBP.code`);
a type slice of a choice element (`value[x]:valueQuantity`) becomes the renamed element
(`valueQuantity`), which is what it constrains.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]

__all__ = ["Node", "build_tree", "fixed_or_pattern", "merge_elements"]


@dataclass
class Node:
    name: str  # the element's name in its parent: "category", "value[x]", "valueQuantity"
    elem: JsonObj | None = None
    children: dict[str, Node] = field(default_factory=dict)
    slices: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str) -> Node:
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = Node(name)
        return node

    def slice(self, name: str) -> Node:
        node = self.slices.get(name)
        if node is None:
            node = self.slices[name] = Node(self.name)
        return node


def _segments(elem: JsonObj) -> list[tuple[str, str | None]]:
    text = elem.get("id") or elem.get("path") or ""
    out: list[tuple[str, str | None]] = []
    for part in str(text).split("."):
        name, _, slice_name = part.partition(":")
        if name.endswith("[x]") and slice_name.startswith(name[:-3]) and "/" not in slice_name:
            out.append((slice_name, None))  # value[x]:valueQuantity is valueQuantity
        else:
            out.append((name, slice_name or None))
    return out


def merge_elements(elements: Iterable[JsonObj]) -> list[JsonObj]:
    """Elements in order, later ones with the same id laid over earlier ones; constraints add up."""
    merged: dict[str, JsonObj] = {}
    for elem in elements:
        key = str(elem.get("id") or elem.get("path"))
        old = merged.get(key)
        if old is None:
            merged[key] = dict(elem)
            continue
        new = {**old, **elem}
        if "constraint" in old and "constraint" in elem:
            keys = {c.get("key") for c in elem["constraint"]}
            new["constraint"] = [c for c in old["constraint"] if c.get("key") not in keys] + list(
                elem["constraint"]
            )
        if any(k.startswith(("fixed", "pattern")) for k in elem):
            for k in [k for k in old if k.startswith(("fixed", "pattern")) and k not in elem]:
                del new[k]
        merged[key] = new
    return list(merged.values())


def build_tree(elements: Iterable[JsonObj]) -> Node:
    root: Node | None = None
    for elem in elements:
        segs = _segments(elem)
        if not segs:
            continue
        if root is None:
            root = Node(segs[0][0])
        node = root
        first_slice = segs[0][1]
        if first_slice:
            node = node.slice(first_slice)
        for name, slice_name in segs[1:]:
            node = node.child(name)
            if slice_name:
                node = node.slice(slice_name)
        node.elem = elem
    return root or Node("")


def fixed_or_pattern(elem: JsonObj | None) -> tuple[str, Any] | None:
    """("fixed" | "pattern", value) of an element, if it has one."""
    if not elem:
        return None
    for key, value in elem.items():
        if key.startswith("fixed") and len(key) > 5:
            return "fixed", value
        if key.startswith("pattern") and len(key) > 7:
            return "pattern", value
    return None
