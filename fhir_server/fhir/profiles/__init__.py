"""Validation against StructureDefinition profiles: `ProfileRegistry.validate(resource, url)`.

Pure FHIR (no I/O but the packaged definitions): `terminology` expands value sets, `elements`
turns a profile into an element tree, `validator` walks a resource along it, `invariants` runs
constraints through the FHIRPath compiler, `registry` holds the known profiles and value sets.
"""

from __future__ import annotations

from fhir_server.fhir.profiles.registry import ProfileRegistry, core_definitions

__all__ = ["ProfileRegistry", "core_definitions"]
