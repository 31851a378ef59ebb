"""Search criteria -> MongoDB filters on the `resources` collection.

Each criterion becomes an `$elemMatch` on one search-value array (see `documents.py`), which the
multikey compound index `(t, <array>.p, <array>.<value>)` serves. A clause (comma: OR) is an `$or`,
a query's clauses an `$and`. Chains, `_has` and `_list` resolve their inner query to the matching
(type, id) pairs first, with one indexed query each, and match those: MongoDB has no correlated
subquery an index could serve. Values enter only as BSON values, never as query operators.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.search.query import (
    ChainCriterion,
    Clause,
    CompartmentCriterion,
    CompositeCriterion,
    Criterion,
    DateCriterion,
    HasCriterion,
    IdCriterion,
    LastUpdatedCriterion,
    ListCriterion,
    MissingCriterion,
    NumberCriterion,
    Prefix,
    QuantityCriterion,
    ReferenceCriterion,
    StringCriterion,
    TextCriterion,
    TokenCriterion,
    TokenSetCriterion,
    UriCriterion,
)
from fhir_server.storage.mongo.documents import ARRAY_FOR_TYPE, resource_key, words

Filter = dict[str, Any]
# Conditions on one array element as alternatives (ORed): each becomes its own `$elemMatch`, so
# no `$or` sits inside an `$elemMatch` (and each alternative can use the index on its own).
Alts = list[Filter]
# Runs a filter on `resources` and returns (type, id) of the matches (deleted ones excluded).
Targets = list[tuple[str, str]]
Resolver = Callable[[Filter], Awaitable[Targets]]
# Reads the (type, id) pairs that `param` references from the resources matching a filter.
RefResolver = Callable[[Filter, str], Awaitable[Targets]]

_TOP = "\U0010ffff"
NOTHING: Filter = {"_id": {"$in": []}}


def types_filter(types: tuple[str, ...]) -> Filter:
    if len(types) == 1:
        return {"t": types[0]}
    return {"t": {"$in": list(types)}} if types else {}


def range_conds(prefix: Prefix, lo: str, hi: str, low: int, high: int) -> Alts:
    """FHIR's range comparison of a stored [lo, hi) with a searched [low, high) (as in SQLite)."""
    match prefix:
        case "eq":
            return [{lo: {"$gte": low, "$lt": high}, hi: {"$lte": high}}]
        case "ne":
            return [{lo: {"$lt": low}}, {hi: {"$gt": high}}]
        case "gt":
            return [{hi: {"$gt": high}}]
        case "lt":
            return [{lo: {"$lt": low}}]
        case "ge":
            return [{hi: {"$gt": high}}, {lo: {"$gte": low}, hi: {"$gt": low, "$lte": high}}]
        case "le":
            return [{lo: {"$lt": low}}, {lo: {"$gte": low, "$lt": high}, hi: {"$lte": high}}]
        case "sa":
            return [{lo: {"$gte": high}}]
        case "eb":
            return [{hi: {"$lte": low}}]
        case "ap":
            return [{lo: {"$lt": high}, hi: {"$gt": low}}]
    raise AssertionError(prefix)


def instant_conds(prefix: Prefix, field: str, low: int, high: int) -> Alts:
    """The same comparison for a stored instant `u`, i.e. the range [u, u + 1)."""
    match prefix:
        case "eq" | "ap":
            return [{field: {"$gte": low, "$lt": high}}]
        case "ne":
            return [{field: {"$lt": low}}, {field: {"$gte": high}}]
        case "gt" | "sa":
            return [{field: {"$gte": high}}]
        case "lt" | "eb":
            return [{field: {"$lt": low}}]
        case "ge":
            return [{field: {"$gte": low}}]
        case "le":
            return [{field: {"$lt": high}}]
    raise AssertionError(prefix)


def value_conds(prefix: Prefix, field: str, value: float, low: float, high: float) -> Alts:
    """A stored point value against a searched value with an implicit precision range."""
    match prefix:
        case "eq" | "ap":
            return [{field: {"$gte": low, "$lt": high}}]
        case "ne":
            return [{field: {"$lt": low}}, {field: {"$gte": high}}]
        case "gt":
            return [{field: {"$gt": value}}]
        case "lt":
            return [{field: {"$lt": value}}]
        case "sa":
            return [{field: {"$gte": high}}]
        case "eb":
            return [{field: {"$lt": low}}]
        case "ge":
            return [{field: {"$gte": value}}]
        case "le":
            return [{field: {"$lte": value}}]
    raise AssertionError(prefix)


def any_of(alts: Alts) -> Filter:
    if not alts:
        return NOTHING
    return alts[0] if len(alts) == 1 else {"$or": alts}


def both(a: Alts, b: Alts) -> Alts:
    """AND of two alternatives lists on one element, as alternatives (their cross product)."""
    return [{**x, **y} for x in a for y in b]


def text_filter(field: str, text: str) -> Filter:
    """`_text`/`_content`: words ANDed and prefix-matched, `OR` between words honoured."""
    groups: list[list[str]] = [[]]
    for word in text.split():
        if word == "OR":
            groups.append([])
        else:
            groups[-1].extend(words(word))
    ors = [{"$and": [{field: {"$regex": "^" + re.escape(w)}} for w in g]} for g in groups if g]
    if not ors:
        return NOTHING
    return ors[0] if len(ors) == 1 else {"$or": ors}


def _elem(array: str, param: str, cond: Filter | Alts, negate: bool = False) -> Filter:
    alts = cond if isinstance(cond, list) else [cond]
    matches: Alts = [{array: {"$elemMatch": {"p": param, **a}}} for a in alts]
    if negate:
        return {"$nor": matches}
    return any_of(matches)


def _targets_filter(targets: Targets, types: tuple[str, ...] | None = None) -> Filter:
    keys = [resource_key(t, i) for t, i in targets if types is None or not types or t in types]
    return {"_id": {"$in": sorted(set(keys))}}


def _refs_to(param: str, targets: Targets) -> Filter:
    by_type: dict[str, list[str]] = {}
    for t, i in targets:
        by_type.setdefault(t, []).append(i)
    ors = [
        {"rf": {"$elemMatch": {"p": param, "rt": t, "ri": {"$in": sorted(set(ids))}}}}
        for t, ids in sorted(by_type.items())
    ]
    if not ors:
        return NOTHING
    return ors[0] if len(ors) == 1 else {"$or": ors}


class CriteriaCompiler:
    """Compiles criteria on resources of `types`; `resolve`/`refs` run inner queries."""

    def __init__(self, types: tuple[str, ...], resolve: Resolver, refs: RefResolver) -> None:
        self.types = types
        self.resolve = resolve
        self.refs = refs

    async def where(self, clauses: tuple[Clause, ...]) -> Filter:
        parts = [await self.clause(c) for c in clauses]
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    async def clause(self, clause: Clause) -> Filter:
        ors = [await self.criterion(c) for c in clause.criteria]
        return ors[0] if len(ors) == 1 else {"$or": ors}

    async def criterion(self, c: Criterion) -> Filter:
        match c:
            case TokenCriterion():
                return self._token(c)
            case StringCriterion(param=p, value=v, mode=mode):
                if mode == "exact":
                    return _elem("st", p, {"e": v})
                if mode == "contains":
                    return _elem("st", p, {"n": {"$regex": re.escape(v)}})
                return _elem("st", p, {"n": {"$gte": v, "$lt": v + _TOP}})
            case DateCriterion(param=p, prefix=pre, low=lo, high=hi):
                return _elem("dt", p, range_conds(pre, "lo", "hi", lo, hi))
            case NumberCriterion(param=p, prefix=pre, value=v, low=lo, high=hi):
                return _elem("nm", p, value_conds(pre, "v", v, lo, hi))
            case QuantityCriterion():
                return self._quantity(c)
            case ReferenceCriterion(param=p, target_type=tt, target_id=ti, url=url):
                if url is not None:
                    return _elem("rf", p, {"url": url})
                if tt is not None:
                    return _elem("rf", p, {"ri": ti, "rt": tt})
                return _elem("rf", p, {"ri": ti})
            case UriCriterion(param=p, uri=u, mode=mode):
                if mode == "below":
                    return _elem("ur", p, {"u": {"$gte": u, "$lt": u + _TOP}})
                if mode == "above":  # stored uri is a prefix of the searched one
                    return _elem("ur", p, {"u": {"$in": [u[:n] for n in range(1, len(u) + 1)]}})
                return _elem("ur", p, {"u": u})
            case MissingCriterion(param=p, param_type=t, missing=missing):
                return _elem(ARRAY_FOR_TYPE[t], p, {}, negate=missing)
            case IdCriterion(ids=ids, negate=negate):
                if negate:
                    return {"i": {"$nin": list(ids)}}
                if self.types:
                    return {"_id": {"$in": [resource_key(t, i) for t in self.types for i in ids]}}
                return {"i": {"$in": list(ids)}}
            case LastUpdatedCriterion(prefix=pre, low=lo, high=hi):
                return any_of(instant_conds(pre, "u", lo, hi))
            case ChainCriterion(param=p, target_types=tts, inner=inner):
                sub = CriteriaCompiler(tts, self.resolve, self.refs)
                found = await self.resolve({**types_filter(tts), **await sub.where(inner)})
                return _refs_to(p, found)
            case HasCriterion(source_type=st, param=p, inner=inner):
                sub = CriteriaCompiler((st,), self.resolve, self.refs)
                found = await self.refs({"t": st, **await sub.where(inner)}, p)
                return _targets_filter(found, self.types)
            case CompositeCriterion():
                return self._composite(c)
            case TokenSetCriterion():
                return self._token_set(c)
            case TextCriterion(field=f, query=q):
                return text_filter("wn" if f == "narrative" else "wc", q)
            case ListCriterion(list_id=list_id):
                items = await self.refs({"_id": resource_key("List", list_id)}, "item")
                return _targets_filter(items, self.types)
            case CompartmentCriterion(compartment_type=ct, compartment_id=ci, members=members):
                # of type T and pointing at the compartment's resource from one of T's members
                ors: list[Filter] = [
                    {
                        "t": rtype,
                        "rf": {"$elemMatch": {"p": {"$in": list(names)}, "ri": ci, "rt": ct}},
                    }
                    for rtype, names in members
                ]
                return any_of(ors)
        raise AssertionError(f"unsupported criterion {c!r}")

    def _token(self, c: TokenCriterion) -> Filter:
        cond: Filter
        if c.text is not None:
            cond = {"x": {"$regex": "^" + re.escape(c.text)}}
        elif c.code is not None and c.any_system:
            cond = {"c": c.code}
        elif c.code is not None:
            cond = {"c": c.code, "s": c.system}
        else:
            cond = {"s": c.system}
        return _elem("tk", c.param, cond, c.negate)

    def _token_set(self, c: TokenSetCriterion) -> Filter:
        ors: Alts = [{"s": s, "c": code} for s, code in sorted({(s, k) for s, k in c.codes if s})]
        bare = sorted({code for s, code in c.codes if s is None})
        if bare:
            ors.append({"c": {"$in": bare}})
        if c.systems:
            ors.append({"s": {"$in": sorted(c.systems)}})
        if not ors:
            return {} if c.negate else NOTHING
        return _elem("tk", c.param, ors, c.negate)

    def _quantity(self, c: QuantityCriterion) -> Filter:
        cond = value_conds(c.prefix, "v", c.value, c.low, c.high)
        extra: Alts = [{}]
        if c.system is not None and c.code is not None:
            extra = [{"s": c.system, "c": c.code}]
        elif c.code is not None:
            extra = [{"c": c.code}, {"u": c.code}]
        return _elem("qt", c.param, both(cond, extra))

    def _composite(self, c: CompositeCriterion) -> Filter:
        first, second = c.components
        cond: Filter = {}
        more: Alts = [{}]
        if isinstance(first, TokenCriterion) and first.code is not None:
            cond["c1"] = first.code
            if not first.any_system:
                cond["s1"] = first.system
        match second:
            case TokenCriterion(system=s, code=code, any_system=any_s):
                cond["c2"] = code
                if not any_s and s is not None:
                    cond["s2"] = s
            case QuantityCriterion() | NumberCriterion():
                more = value_conds(second.prefix, "v2", second.value, second.low, second.high)
                if isinstance(second, QuantityCriterion) and second.code is not None:
                    cond["c2"] = second.code
                    if second.system is not None:
                        cond["s2"] = second.system
            case DateCriterion(prefix=pre, low=lo, high=hi):
                more = range_conds(pre, "lo2", "hi2", lo, hi)
            case StringCriterion(value=v):
                cond["x2"] = {"$gte": v, "$lt": v + _TOP}
            case _:
                raise AssertionError(f"unsupported composite component {second!r}")
        return _elem("cp", c.param, both([cond], more))
