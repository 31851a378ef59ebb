"""Search-index values of a resource, extracted at write time (see `index_values` for the contract).

`extract_index_values(resource, registry)` gives the deduplicated `IndexValue`s of every search
parameter of the resource's type, using the registry's compiled, cached extractor. Not extracted:
`_id` and `_lastUpdated` (kept on the resource row by the store), special parameters, and parameters
without an expression (`_text`, `_content`, `_list`, `_has`, `_type`, `_query`).
"""

from __future__ import annotations

import functools
from typing import Any

from fhir_server.fhir.extract.build import NOT_EXTRACTED, Extractor, build_extractor
from fhir_server.fhir.extract.convert import make_converter, reference_value
from fhir_server.fhir.index_values import IndexValue
from fhir_server.fhir.searchparams import SearchParamRegistry

__all__ = [
    "NOT_EXTRACTED",
    "Extractor",
    "build_extractor",
    "extract_index_values",
    "make_converter",
    "reference_value",
]


def extract_index_values(
    resource: dict[str, Any], registry: SearchParamRegistry | None = None
) -> list[IndexValue]:
    """Index values of `resource` for its type's parameters (the default registry if none given)."""
    reg = registry if registry is not None else _default()
    return reg.extractor(resource["resourceType"])(resource)


@functools.cache
def _default() -> SearchParamRegistry:
    return SearchParamRegistry.load_default()
