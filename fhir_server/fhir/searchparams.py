"""Search parameter definitions: the R4 core set from `definitions/search_parameters.json`, plus
custom SearchParameter resources added at run time, and each resource type's compiled extractor.

`Resource`- and `DomainResource`-level parameters (`_id`, `_lastUpdated`, `_tag`, `_profile`,
`_security`, `_source`, `_text`, `_content`, `_list`, `_has`, `_type`, `_query`, `_filter`) apply to
every type (`DomainResource` ones not to Bundle, Binary, Parameters). A parameter's `modifiers` and
`comparators` are the package's when it lists them, else what the R4 search page allows its type.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from fhir_server.fhir.fhirpath import FhirPathError, compile_expression, narrow_expression
from fhir_server.fhir.index_values import IndexValue

__all__ = ["PARAM_TYPES", "ComponentDef", "SearchParamDef", "SearchParamRegistry", "load_default"]

PARAM_TYPES: Final = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
_PREFIXES: Final = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
DEFAULT_MODIFIERS: Final[Mapping[str, tuple[str, ...]]] = {
    "string": ("missing", "exact", "contains"),
    "token": ("missing", "text", "not", "above", "below", "in", "not-in", "of-type"),
    "reference": ("missing", "type", "identifier", "above", "below"),
    "uri": ("missing", "above", "below"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "composite": ("missing",),
    "special": (),
}
_NOT_DOMAIN: Final = frozenset({"Bundle", "Binary", "Parameters"})
_LEVELS: Final = ("Resource", "DomainResource")


@dataclass(frozen=True, slots=True)
class ComponentDef:
    code: str  # the component parameter's code (`code`, `value-quantity`)
    type: str
    expression: str  # relative to the composite's base element
    definition: str  # the component SearchParameter's url


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    code: str
    base: str  # the resource type (or Resource / DomainResource) this definition applies to
    type: str  # one of PARAM_TYPES
    expression: str | None  # FHIRPath narrowed to `base`; None for special and framework params
    url: str
    description: str = ""
    targets: tuple[str, ...] = ()
    components: tuple[ComponentDef, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None


def _from_entry(entry: Mapping[str, Any], all_types: tuple[str, ...]) -> SearchParamDef:
    ptype = entry["type"]
    targets = entry.get("targets", ())
    comparators = _PREFIXES if ptype in ("number", "date", "quantity") else ()
    return SearchParamDef(
        code=entry["code"],
        base=entry["base"],
        type=ptype,
        expression=entry.get("expression") or None,
        url=entry["url"],
        description=entry.get("description", ""),
        targets=tuple(t for t in all_types if t != "Parameters")
        if targets == "*"
        else tuple(targets),
        components=tuple(
            ComponentDef(c["code"], c["type"], c["expression"], c["definition"])
            for c in entry.get("components", ())
        ),
        modifiers=tuple(entry.get("modifiers") or DEFAULT_MODIFIERS.get(ptype, ())),
        comparators=tuple(entry.get("comparators") or comparators),
        multiple_or=entry.get("multipleOr"),
        multiple_and=entry.get("multipleAnd"),
    )


@functools.cache
def _package_definitions() -> tuple[tuple[str, ...], tuple[SearchParamDef, ...]]:
    folder = resources.files("fhir_server.fhir").joinpath("definitions")
    listed = json.loads(folder.joinpath("resource_types.json").read_text(encoding="utf-8"))
    types = tuple(row["type"] for row in listed)
    table = json.loads(folder.joinpath("search_parameters.json").read_text(encoding="utf-8"))
    return types, tuple(_from_entry(entry, types) for entry in table["params"])


class SearchParamRegistry:
    """Parameters by base type and code, and a cached extractor per resource type.

    `tz` is the zone in which dates without one are read when extracting (the server's setting).
    """

    def __init__(
        self,
        resource_types: Iterable[str],
        params: Iterable[SearchParamDef],
        tz: dt.tzinfo = dt.UTC,
    ) -> None:
        self.resource_types: tuple[str, ...] = tuple(resource_types)
        self.tz = tz
        self._by_base: dict[str, dict[str, SearchParamDef]] = {}
        self._by_url: dict[str, SearchParamDef] = {}
        for param in params:
            self._put(param)
        self._views: dict[str, Mapping[str, SearchParamDef]] = {}
        self._extractors: dict[str, Callable[[dict[str, Any]], list[IndexValue]]] = {}

    @classmethod
    def load_default(cls, tz: dt.tzinfo = dt.UTC) -> SearchParamRegistry:
        """A registry of the R4 core parameters (the table is read once; `add` affects only this one)."""
        types, params = _package_definitions()
        return cls(types, params, tz)

    def _put(self, param: SearchParamDef, *, newest: bool = False) -> None:
        self._by_base.setdefault(param.base, {})[param.code] = param
        # A multi-base url keeps its first definition (components only need code and type),
        # unless a custom SearchParameter with that url is added again.
        if newest:
            self._by_url[param.url] = param
        else:
            self._by_url.setdefault(param.url, param)

    def for_type(self, resource_type: str) -> Mapping[str, SearchParamDef]:
        """Every parameter of a resource type, the Resource-level ones included (empty if unknown)."""
        view = self._views.get(resource_type)
        if view is None:
            if resource_type not in self.resource_types:
                return MappingProxyType({})
            merged = dict(self._by_base.get("Resource", {}))
            if resource_type not in _NOT_DOMAIN:
                merged.update(self._by_base.get("DomainResource", {}))
            merged.update(self._by_base.get(resource_type, {}))
            view = self._views[resource_type] = MappingProxyType(merged)
        return view

    def get(self, resource_type: str, code: str) -> SearchParamDef | None:
        return self.for_type(resource_type).get(code)

    def by_url(self, url: str) -> SearchParamDef | None:
        return self._by_url.get(url)

    def extractor(self, resource_type: str) -> Callable[[dict[str, Any]], list[IndexValue]]:
        """The compiled extractor of all of a type's parameters (built once, until `add`)."""
        found = self._extractors.get(resource_type)
        if found is None:
            # Imported here: the extract package imports this module.
            from fhir_server.fhir.extract.build import build_extractor

            found = build_extractor(resource_type, self.for_type(resource_type).values(), self.tz)
            self._extractors[resource_type] = found
        return found

    def add(self, search_parameter: Mapping[str, Any]) -> None:
        """Add (or replace, by base and code) a custom SearchParameter resource for each of its bases.

        Raises ValueError naming the problem when it is malformed or its expression is outside the
        supported FHIRPath subset. Already stored resources need a reindex to get its values.
        """
        params = self._parse_custom(search_parameter)
        for i, param in enumerate(params):
            self._put(param, newest=i == 0)
        self._views.clear()
        self._extractors.clear()

    def _parse_custom(self, sp: Mapping[str, Any]) -> list[SearchParamDef]:
        name = f"SearchParameter {sp.get('url') or sp.get('id') or sp.get('code')!r}"
        if sp.get("resourceType") != "SearchParameter":
            raise ValueError(f"{name}: resourceType must be SearchParameter")
        code, ptype, url, bases = sp.get("code"), sp.get("type"), sp.get("url"), sp.get("base")
        if not isinstance(code, str) or not code or not isinstance(url, str) or not url:
            raise ValueError(f"{name}: code and url are required")
        if ptype not in PARAM_TYPES:
            raise ValueError(f"{name}: type must be one of {', '.join(sorted(PARAM_TYPES))}")
        known = set(self.resource_types) | set(_LEVELS)
        if not isinstance(bases, list) or not bases or any(b not in known for b in bases):
            raise ValueError(f"{name}: base must list known resource types")
        expression = sp.get("expression")
        if ptype != "special" and (not isinstance(expression, str) or not expression.strip()):
            raise ValueError(f"{name}: an expression is required for a {ptype} parameter")
        components = tuple(self._component(name, c) for c in sp.get("component") or ())
        if ptype == "composite" and not components:
            raise ValueError(f"{name}: a composite parameter needs components")
        entry = {
            "code": code,
            "type": ptype,
            "url": url,
            "description": sp.get("description") or "",
            "modifiers": sp.get("modifier"),
            "comparators": sp.get("comparator"),
            "multipleOr": sp.get("multipleOr"),
            "multipleAnd": sp.get("multipleAnd"),
        }
        out = []
        for base in bases:
            narrowed = (
                narrow_expression(expression, base, self.resource_types) if expression else None
            )
            if expression and not narrowed:
                raise ValueError(f"{name}: expression {expression!r} finds nothing on {base}")
            param = replace(
                _from_entry(
                    {**entry, "base": base, "targets": sp.get("target", ())}, self.resource_types
                ),
                expression=narrowed,
                components=components,
            )
            self._check_compiles(name, param)
            out.append(param)
        return out

    def _component(self, name: str, comp: Any) -> ComponentDef:
        definition = comp.get("definition") if isinstance(comp, Mapping) else None
        ref = self._by_url.get(definition) if isinstance(definition, str) else None
        if ref is None or not isinstance(comp.get("expression"), str):
            raise ValueError(f"{name}: component {definition!r} is not a known SearchParameter url")
        return ComponentDef(ref.code, ref.type, comp["expression"], ref.url)

    def _check_compiles(self, name: str, param: SearchParamDef) -> None:
        if not param.expression:
            return
        context = param.base if param.base not in _LEVELS else "Resource"
        try:
            for branch in compile_expression(param.expression, context):
                for comp in param.components:
                    compile_expression(comp.expression, branch.type, context)
        except FhirPathError as exc:
            raise ValueError(f"{name}: unsupported expression: {exc}") from None
        if param.base not in _LEVELS and not compile_expression(param.expression, param.base):
            raise ValueError(
                f"{name}: expression {param.expression!r} finds nothing on {param.base}"
            )


def load_default(tz: dt.tzinfo = dt.UTC) -> SearchParamRegistry:
    """Shorthand for `SearchParamRegistry.load_default`."""
    return SearchParamRegistry.load_default(tz)
