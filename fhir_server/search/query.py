"""The typed search query: what the parser produces and what every storage engine compiles.

Values are already normalised (strings lower-cased, dates as [low, high) microsecond ranges) so an
engine only compares. A `Clause` is an OR of its criteria; a query's clauses are ANDed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


@dataclass(frozen=True, slots=True)
class TokenCriterion:
    """`code` (system None, any_system True), `system|code`, `|code` (system None), `system|`.

    `text` set means the :text modifier (normalised prefix match on display/text rows).
    `negate` is the :not modifier: resources with no matching row for the param.
    """

    param: str
    system: str | None
    code: str | None
    any_system: bool = False
    text: str | None = None
    negate: bool = False


@dataclass(frozen=True, slots=True)
class StringCriterion:
    param: str
    value: str  # normalised, or exact text when mode == "exact"
    mode: Literal["prefix", "exact", "contains"] = "prefix"


@dataclass(frozen=True, slots=True)
class DateCriterion:
    """A date parameter value as a [low, high) range with its prefix."""

    param: str
    prefix: Prefix
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class NumberCriterion:
    """`low`/`high` are the implicit precision range of the value, used by eq/ne/ap."""

    param: str
    prefix: Prefix
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityCriterion:
    param: str
    prefix: Prefix
    value: float
    low: float
    high: float
    system: str | None = None
    code: str | None = None  # matched against the stored code, or the unit when system is None


@dataclass(frozen=True, slots=True)
class ReferenceCriterion:
    """`target_type` None matches any type; `url` set matches absolute references literally."""

    param: str
    target_type: str | None
    target_id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class UriCriterion:
    param: str
    uri: str
    mode: Literal["exact", "above", "below"] = "exact"


@dataclass(frozen=True, slots=True)
class MissingCriterion:
    param: str
    param_type: str  # which index holds the parameter's values
    missing: bool


@dataclass(frozen=True, slots=True)
class IdCriterion:
    ids: tuple[str, ...]
    negate: bool = False  # _id:not


@dataclass(frozen=True, slots=True)
class LastUpdatedCriterion:
    prefix: Prefix
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class TokenSetCriterion:
    """Any of `codes` ((system, code) pairs) or any code of `systems`; `negate` for :not-in."""

    param: str
    codes: tuple[tuple[str | None, str], ...]
    systems: tuple[str, ...] = ()
    negate: bool = False


@dataclass(frozen=True, slots=True)
class ValueSetCriterion:
    """`:in` / `:not-in`, before the value set is expanded into a TokenSetCriterion."""

    param: str
    value_set: str
    negate: bool = False


@dataclass(frozen=True, slots=True)
class SubsumptionCriterion:
    """Token `:above` / `:below`, before the code system hierarchy is read."""

    param: str
    system: str | None
    code: str
    direction: Literal["above", "below"]


@dataclass(frozen=True, slots=True)
class TextCriterion:
    """`_text` (field "narrative") or `_content` (field "content"): words, prefix-matched."""

    field: Literal["narrative", "content"]
    query: str


@dataclass(frozen=True, slots=True)
class ListCriterion:
    """`_list`: the resource is an item of List/`list_id`."""

    list_id: str


@dataclass(frozen=True, slots=True)
class CompartmentCriterion:
    """In the compartment `compartment_type/compartment_id` (`Patient/1/*`): a resource of type
    T is in it when one of T's reference parameters listed in `members` (T, params) points at
    the compartment's resource (the R4 CompartmentDefinitions). A search of one type
    (`Patient/1/Observation`) uses ReferenceCriteria instead."""

    compartment_type: str
    compartment_id: str
    members: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class ChainCriterion:
    """`param` (a reference) points at a resource of one of `target_types` matching `inner`."""

    param: str
    target_types: tuple[str, ...]
    inner: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class HasCriterion:
    """`_has:Type:param:...`: some `source_type` resource whose `param` points here matches `inner`."""

    source_type: str
    param: str
    inner: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class CompositeCriterion:
    param: str
    components: tuple[Criterion, ...]


Criterion = (
    TokenCriterion
    | StringCriterion
    | DateCriterion
    | NumberCriterion
    | QuantityCriterion
    | ReferenceCriterion
    | UriCriterion
    | MissingCriterion
    | IdCriterion
    | LastUpdatedCriterion
    | ChainCriterion
    | HasCriterion
    | CompositeCriterion
    | TokenSetCriterion
    | ValueSetCriterion
    | SubsumptionCriterion
    | TextCriterion
    | ListCriterion
    | CompartmentCriterion
)


@dataclass(frozen=True, slots=True)
class Clause:
    """Criteria joined by OR (the comma in a parameter value)."""

    criteria: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # a search parameter code, or "_id" / "_lastUpdated"
    param_type: str  # the parameter's type: date, string, token, number, quantity, reference, uri
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """`_include` (reverse False) or `_revinclude` (reverse True): source_type:param[:target_type]."""

    source_type: str
    param: str  # "*" for every reference parameter
    target_type: str | None = None
    reverse: bool = False
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class SearchQuery:
    resource_types: tuple[str, ...]  # one for a type search; empty for every type (system search)
    clauses: tuple[Clause, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    total: Literal["none", "estimate", "accurate"] = "none"
    includes: tuple[Include, ...] = field(default_factory=tuple)
    # Keyset paging: the page starts after `after` (next) or ends before `before` (previous);
    # `snapshot` bounds the result set to what existed when the first page was served.
    after: tuple[object, ...] | None = None
    before: tuple[object, ...] | None = None
    snapshot: int | None = None
