"""Assemble one resource type's extractor from its search parameters' compiled expressions.

Each (parameter, branch) pair whose value type the parameter can index becomes a run: the branch's
function plus a converter. Runs are grouped by the top-level JSON key their branch reads first, so a
resource only pays for the keys it has (an Observation has a dozen keys; its type has ~50 params
expanding to ~150 branches). Composite parameters evaluate their components per repetition of the
composite's base element and pair only values of that same repetition.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from fhir_server.fhir.extract.convert import Convert, make_converter
from fhir_server.fhir.fhirpath import Branch, Fn, compile_expression
from fhir_server.fhir.index_values import CompositeValue, IndexValue

if TYPE_CHECKING:
    from fhir_server.fhir.searchparams import SearchParamDef

__all__ = ["NOT_EXTRACTED", "Extractor", "build_extractor"]

Extractor = Callable[[dict[str, Any]], list[IndexValue]]
# The store keeps id and lastUpdated on the resource row; the others have no values to index.
NOT_EXTRACTED: Final = frozenset({"_id", "_lastUpdated"})
_Run = tuple[Fn, Convert]


@dataclass(frozen=True)
class _Component:
    fn: Fn
    convert: Convert


def build_extractor(
    resource_type: str, params: Iterable[SearchParamDef], tz: dt.tzinfo
) -> Extractor:
    """An extractor of every indexable parameter in `params` for resources of `resource_type`.

    Raises FhirPathError (a ValueError) if an expression is outside the supported subset.
    """
    keyed: dict[str, list[_Run]] = {}
    always: list[_Run] = []
    for param in params:
        if param.code in NOT_EXTRACTED or param.type == "special" or not param.expression:
            continue
        for branch, run in _runs(resource_type, param, tz):
            if branch.root_key is None:
                always.append(run)
            else:
                keyed.setdefault(branch.root_key, []).append(run)
    frozen_keyed = {key: tuple(runs) for key, runs in keyed.items()}
    frozen_always = tuple(always)

    def extract(resource: dict[str, Any]) -> list[IndexValue]:
        out: list[IndexValue] = []
        for key in resource:
            runs = frozen_keyed.get(key)
            if runs is not None:
                for fn, convert in runs:
                    for value in fn(resource, resource):
                        convert(value, out)
        for fn, convert in frozen_always:
            for value in fn(resource, resource):
                convert(value, out)
        return list(dict.fromkeys(out))  # identical rows once, first-seen order kept

    return extract


def _runs(resource_type: str, param: SearchParamDef, tz: dt.tzinfo) -> list[tuple[Branch, _Run]]:
    branches = compile_expression(param.expression or "", resource_type)
    runs: list[tuple[Branch, _Run]] = []
    for branch in branches:
        if param.type == "composite":
            fn = _composite(resource_type, param, branch, tz)
            if fn is not None:
                runs.append((branch, (fn, _append)))
        elif (convert := make_converter(param.code, param.type, branch.type, tz)) is not None:
            runs.append((branch, (branch.fn, convert)))
    return runs


def _append(value: Any, out: list[IndexValue]) -> None:
    out.append(value)


def _composite(resource_type: str, param: SearchParamDef, base: Branch, tz: dt.tzinfo) -> Fn | None:
    """The CompositeValues of each repetition of the base element, combining only its own values."""
    components: list[tuple[_Component, ...]] = []
    needed: list[frozenset[str]] = []  # per component: keys of the item one of which must exist
    for comp in param.components:
        options = []
        keys: set[str] | None = set()
        for branch in compile_expression(comp.expression, base.type, resource_type):
            convert = make_converter(comp.code, comp.type, branch.type, tz, primary=True)
            if convert is not None:
                options.append(_Component(branch.fn, convert))
                keys = None if keys is None or branch.root_key is None else keys | {branch.root_key}
        if not options:
            return None  # a component that can never have a value: no combination ever
        components.append(tuple(options))
        if keys is not None:
            needed.append(frozenset(keys))
    code, base_fn, frozen, checks = param.code, base.fn, tuple(components), tuple(needed)

    def run(this: Any, resource: Any) -> list[Any]:
        out: list[Any] = []
        for item in base_fn(this, resource):
            # Cheap test first: most Observations lack all but one of the value[x] keys.
            if item.__class__ is not dict:
                continue
            for required in checks:
                if required.isdisjoint(item):
                    break
            else:
                per_component = _component_values(frozen, item, resource)
                if per_component is not None:
                    out.extend(
                        CompositeValue(code, combo) for combo in itertools.product(*per_component)
                    )
        return out

    return run


def _component_values(
    components: tuple[tuple[_Component, ...], ...], item: Any, resource: Any
) -> list[list[IndexValue]] | None:
    """Each component's values for one repetition (deduplicated); None if one has none."""
    per_component: list[list[IndexValue]] = []
    for options in components:
        values: list[IndexValue] = []
        for option in options:
            for value in option.fn(item, resource):
                option.convert(value, values)
        if not values:
            return None
        per_component.append(list(dict.fromkeys(values)) if len(values) > 1 else values)
    return per_component
