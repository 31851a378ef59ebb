"""R4 (4.0.1) element definitions, from the table that `tools/gen_structures.py` derives from the core package.

A *table* is a resource type, a datatype or a backbone element (named by its path, such as
`Observation.component`). Each has elements, looked up by declared name (`value[x]`) or JSON name
(`valueQuantity`). Element types are *effective* type names: a backbone element's type is the name
of its own table and a contentReference's type the referenced table, so a walker never needs to
know about either. The table is loaded on first use and cached; nothing else is read.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

TABLE_FILE = "structures.json.gz"


@dataclass(frozen=True, slots=True)
class Binding:
    strength: str  # required | extensible | preferred | example
    value_set: str  # canonical URL without version


@dataclass(frozen=True, slots=True)
class ElementDef:
    owner: str  # table name: "Observation", "Observation.component", "Quantity"
    name: str  # declared name; choice elements keep "[x]"
    min: int
    max: int | None  # None: unbounded ("*")
    types: tuple[str, ...]
    content_ref: str | None = None
    profiles: tuple[str, ...] = ()
    target_profiles: tuple[str, ...] = ()
    binding: Binding | None = None

    @property
    def path(self) -> str:
        return f"{self.owner}.{self.name}"

    @property
    def is_array(self) -> bool:
        return self.max is None or self.max > 1

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    def json_names(self) -> dict[str, str]:
        """JSON property name -> type; a choice element has one property per allowed type."""
        if not self.is_choice:
            return {self.name: self.types[0]} if self.types else {}
        stem = self.name[:-3]
        return {stem + t[0].upper() + t[1:]: t for t in self.types}


@dataclass(frozen=True, slots=True)
class TypeDef:
    name: str
    kind: str  # resource | complex-type | primitive-type | backbone
    abstract: bool
    elements: Mapping[str, ElementDef]  # by declared name, in definition order
    by_json_name: Mapping[str, tuple[ElementDef, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PrimitiveDef:
    name: str
    json: str  # string | boolean | integer | number
    regex: str | None
    max_length: int | None


class Structures:
    """The loaded table. Build through `structures()`, which caches it."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.fhir_version: str = raw["fhirVersion"]
        self._types = {name: _type_def(name, t) for name, t in raw["types"].items()}
        self._primitives = {
            name: PrimitiveDef(name, p["json"], p.get("regex"), p.get("maxLength"))
            for name, p in raw["primitives"].items()
        }
        self._value_sets: dict[str, dict[str, frozenset[str]]] = {
            url: {system: frozenset(codes) for system, codes in systems.items()}
            for url, systems in raw["valueSets"].items()
        }
        self.skipped_bindings: tuple[Mapping[str, Any], ...] = tuple(raw["skippedBindings"])
        self.resource_types: frozenset[str] = frozenset(
            n for n, t in self._types.items() if t.kind == "resource" and not t.abstract
        )

    def type(self, name: str) -> TypeDef | None:
        return self._types.get(name)

    def element(self, type_name: str, name: str) -> ElementDef | None:
        """An element by declared name (`value[x]`, `value`) or JSON name (`valueQuantity`)."""
        t = self._types.get(type_name)
        if t is None:
            return None
        found = t.elements.get(name) or t.elements.get(name + "[x]")
        if found is None and name in t.by_json_name:
            found = t.by_json_name[name][0]
        return found

    def primitive(self, name: str) -> PrimitiveDef | None:
        return self._primitives.get(name)

    def primitives(self) -> tuple[PrimitiveDef, ...]:
        return tuple(self._primitives.values())

    def value_set(self, url: str) -> Mapping[str, frozenset[str]] | None:
        """System -> codes of a required-bound value set expanded from the package, else None."""
        return self._value_sets.get(url.split("|")[0])

    def value_set_codes(self, url: str) -> frozenset[str] | None:
        """All codes of the value set regardless of system (what a bare `code` element can hold)."""
        systems = self.value_set(url)
        if systems is None:
            return None
        return frozenset().union(*systems.values())


def _type_def(name: str, raw: Mapping[str, Any]) -> TypeDef:
    elements: dict[str, ElementDef] = {}
    for e in raw["elements"]:
        b = e.get("b")
        el = ElementDef(
            owner=name,
            name=e["n"],
            min=e["min"],
            max=None if e["max"] == "*" else int(e["max"]),
            types=tuple(e["t"]),
            content_ref=e.get("ref"),
            profiles=tuple(e.get("p", ())),
            target_profiles=tuple(e.get("tp", ())),
            binding=Binding(b[0], b[1]) if b else None,
        )
        elements[el.name] = el
    by_json = {k: (el, t) for el in elements.values() for k, t in el.json_names().items()}
    return TypeDef(name, raw["kind"], raw["abstract"], elements, by_json)


@functools.cache
def structures() -> Structures:
    data = importlib.resources.files("fhir_server.fhir").joinpath("definitions", TABLE_FILE)
    return Structures(orjson.loads(gzip.decompress(data.read_bytes())))


def type_def(name: str) -> TypeDef | None:
    return structures().type(name)


def element(type_name: str, name: str) -> ElementDef | None:
    return structures().element(type_name, name)


def primitive(name: str) -> PrimitiveDef | None:
    return structures().primitive(name)


def value_set_codes(url: str) -> frozenset[str] | None:
    return structures().value_set_codes(url)
