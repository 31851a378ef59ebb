"""R4 compartments (Patient, Encounter, RelatedPerson, Practitioner, Device), from the package's
CompartmentDefinitions via `definitions/compartments.json`.

`compartment_params("Patient", "Observation")` gives the search parameters whose values put an
Observation into a Patient's compartment (`subject`, `performer`). The compartment's own resource
(`{def}` in the definitions, e.g. the Encounter in Encounter/123's compartment) is matched by id, not
by a parameter: its type is listed by `compartment_resource_types` with no parameters.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

__all__ = ["compartment_params", "compartment_resource_types", "compartment_types"]


@functools.cache
def _table() -> dict[str, dict[str, tuple[str, ...]]]:
    path = resources.files("fhir_server.fhir").joinpath("definitions", "compartments.json")
    raw: dict[str, dict[str, list[str]]] = json.loads(path.read_text(encoding="utf-8"))
    return {name: {rt: tuple(ps) for rt, ps in types.items()} for name, types in raw.items()}


def compartment_types() -> tuple[str, ...]:
    """The compartment types: Device, Encounter, Patient, Practitioner, RelatedPerson."""
    return tuple(sorted(_table()))


def _compartment(compartment: str) -> dict[str, tuple[str, ...]]:
    found = _table().get(compartment)
    if found is None:
        known = ", ".join(compartment_types())
        raise ValueError(f"unknown compartment {compartment!r} (expected one of {known})")
    return found


def compartment_params(compartment: str, resource_type: str) -> tuple[str, ...]:
    """Parameter codes linking `resource_type` to a `compartment` (empty if it is not a member).

    Raises ValueError for an unknown compartment type.
    """
    return _compartment(compartment).get(resource_type, ())


def compartment_resource_types(compartment: str) -> tuple[str, ...]:
    """Resource types that can be in a compartment of that type, sorted (its own type included)."""
    return tuple(sorted(_compartment(compartment)))
