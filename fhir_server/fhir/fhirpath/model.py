"""The static FHIR type model the compiler navigates: element types from `element_types.json`.

Each type maps element names to a type name, or to a list of type names for a choice element
(`Observation.value` -> Quantity, CodeableConcept, ...; JSON keys `valueQuantity`, ...). Backbone
elements are types named by their path (`Observation.component`). `bases` gives each type's parent,
so `as Quantity` also accepts Age/Duration and `Resource.meta` applies to every resource.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

__all__ = ["ElementModel", "load_model"]


class ElementModel:
    def __init__(self, types: Mapping[str, Mapping[str, Any]], bases: Mapping[str, str]) -> None:
        self.types = types
        self.bases = bases
        self._lower = {name.lower(): name for name in (*types, *bases)}
        self.resource_types = frozenset(
            t for t in bases if self.is_subtype(t, "Resource") and t not in ("DomainResource",)
        )

    def is_subtype(self, name: str, ancestor: str) -> bool:
        """True when `name` is `ancestor` or derives from it (Age -> Quantity -> Element)."""
        seen = name
        while True:
            if seen == ancestor:
                return True
            parent = self.bases.get(seen)
            if parent is None:
                return False
            seen = parent

    def is_resource(self, name: str) -> bool:
        return name in self.resource_types or name in ("Resource", "DomainResource")

    def type_name(self, name: str) -> str | None:
        """A type specifier as written (`Quantity`, `FHIR.string`, `DateTime`) -> model type name.

        Case-insensitive as a last resort because the R4 package itself writes `value.as(DateTime)`
        (Observation-code-value-date) where FHIRPath's name is `dateTime`.
        """
        bare = name.removeprefix("FHIR.")
        if bare in self.types or bare in self.bases:
            return bare
        if bare.startswith("System."):
            return {"String": "string", "Boolean": "boolean", "Integer": "integer"}.get(
                bare[7:], self._lower.get(bare[7:].lower())
            )
        return self._lower.get(bare.lower())

    def children(self, owner: str, name: str) -> list[tuple[str, str]] | None:
        """(JSON key, type) pairs of element `name` of type `owner`; None when there is no such element.

        A choice element gives one pair per allowed type; derived types inherit their parents'.
        """
        seen: str | None = owner
        while seen is not None:
            elements = self.types.get(seen)
            if elements is not None and name in elements:
                declared = elements[name]
                if isinstance(declared, list):
                    return [(name + t[0].upper() + t[1:], t) for t in declared]
                return [(name, str(declared))]
            seen = self.bases.get(seen)
        return None

    def choice_type(self, owner: str, key: str) -> tuple[str, str] | None:
        """For a JSON key such as `valueQuantity` of `owner`: (element name, type), else None."""
        for name, declared in self.types.get(owner, {}).items():
            if isinstance(declared, list) and key.startswith(name):
                for t in declared:
                    if key == name + t[0].upper() + t[1:]:
                        return name, t
        return None


@functools.cache
def load_model() -> ElementModel:
    """The R4 model shipped in `fhir_server/fhir/definitions/element_types.json` (loaded once)."""
    path = resources.files("fhir_server.fhir").joinpath("definitions", "element_types.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return ElementModel(data["types"], data["bases"])
