"""Token `:in`/`:not-in` and `:above`/`:below`, answered from ValueSets and CodeSystems stored in
the server: before a query reaches the engine, those criteria become plain sets of codes."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.auth.scoped_storage import unscoped
from fhir_server.errors import BadRequest
from fhir_server.fhir import jsonio
from fhir_server.interactions.context import Services
from fhir_server.search.query import (
    ChainCriterion,
    Clause,
    Criterion,
    HasCriterion,
    SearchQuery,
    SubsumptionCriterion,
    TokenSetCriterion,
    UriCriterion,
    ValueSetCriterion,
)
from fhir_server.storage.base import StoredResource

Codes = set[tuple[str | None, str]]
_MAX_DEPTH = 5


async def _find(ctx: Services, rtype: str, url: str) -> dict[str, Any] | None:
    """The current ValueSet/CodeSystem with canonical `url` (or `Type/id`), if stored."""
    stored: StoredResource | None = None
    storage = unscoped(ctx.storage)  # the server's own look-up, not the caller's data access
    if url.startswith(f"{rtype}/"):
        stored = await storage.read(rtype, url.split("/", 1)[1].split("|")[0])
        if stored is not None and stored.deleted:
            stored = None
    else:
        canonical = url.split("|", 1)[0]
        query = SearchQuery((rtype,), (Clause((UriCriterion("url", canonical),)),), count=1)
        page = await storage.search(query)
        stored = page.matches[0] if page.matches else None
    return jsonio.loads_own(stored.body) if stored else None


def _concepts(concepts: list[Any], parent: str | None, parents: dict[str, set[str]]) -> None:
    for c in concepts:
        code = c.get("code")
        if not isinstance(code, str):
            continue
        parents.setdefault(code, set())
        if parent is not None:
            parents[code].add(parent)
        _concepts(c.get("concept", []), code, parents)


async def _hierarchy(ctx: Services, system: str) -> dict[str, set[str]]:
    cs = await _find(ctx, "CodeSystem", system)
    if cs is None or not cs.get("concept"):
        raise BadRequest(
            f"The hierarchy of code system '{system}' is not known to this server "
            "(store its CodeSystem with concepts to use :above/:below/is-a)"
        )
    parents: dict[str, set[str]] = {}
    _concepts(cs["concept"], None, parents)
    return parents


def _closure(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


async def subsumed(ctx: Services, system: str, code: str, direction: str) -> set[str]:
    parents = await _hierarchy(ctx, system)
    if direction == "above":
        return _closure(code, parents)
    children: dict[str, set[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(child)
    return _closure(code, children)


async def _include(ctx: Services, inc: dict[str, Any], depth: int) -> tuple[Codes, set[str]]:
    codes: Codes = set()
    systems: set[str] = set()
    system = inc.get("system")
    for vs_url in inc.get("valueSet", []):
        sub_codes, sub_systems = await expand(ctx, vs_url, depth + 1)
        codes |= sub_codes
        systems |= sub_systems
    if system and inc.get("concept"):
        codes |= {(system, c["code"]) for c in inc["concept"] if "code" in c}
    elif system and inc.get("filter"):
        for f in inc["filter"]:
            if f.get("property") == "concept" and f.get("op") in ("is-a", "descendent-of"):
                below = await subsumed(ctx, system, f["value"], "below")
                if f["op"] == "descendent-of":
                    below.discard(f["value"])
                codes |= {(system, c) for c in below}
            else:
                raise BadRequest(
                    f"ValueSet filter '{f.get('property')} {f.get('op')}' is not supported"
                )
    elif system:
        systems.add(system)
    return codes, systems


async def expand(ctx: Services, url: str, depth: int = 0) -> tuple[Codes, set[str]]:
    """The codes of a stored ValueSet, and the code systems it includes whole."""
    if depth > _MAX_DEPTH:
        raise BadRequest(f"ValueSet '{url}' includes value sets too deeply")
    vs = await _find(ctx, "ValueSet", url)
    if vs is None:
        raise BadRequest(f"ValueSet '{url}' is not known to this server")
    codes: Codes = set()
    systems: set[str] = set()
    contains = (vs.get("expansion") or {}).get("contains")
    if contains:
        stack = list(contains)
        while stack:
            c = stack.pop()
            if "code" in c:
                codes.add((c.get("system"), c["code"]))
            stack.extend(c.get("contains", []))
        return codes, systems
    compose = vs.get("compose") or {}
    for inc in compose.get("include", []):
        c, s = await _include(ctx, inc, depth)
        codes |= c
        systems |= s
    for exc in compose.get("exclude", []):
        c, s = await _include(ctx, exc, depth)
        if s:
            raise BadRequest(f"ValueSet '{url}' excludes whole code systems; not supported")
        codes -= c
    return codes, systems


Resolver = Callable[[Criterion], Awaitable[Criterion]]


async def _clauses(clauses: tuple[Clause, ...], fn: Resolver) -> tuple[Clause, ...]:
    return tuple([Clause(tuple([await fn(c) for c in cl.criteria])) for cl in clauses])


async def resolve_terminology(ctx: Services, query: SearchQuery) -> SearchQuery:
    """Replace value-set and subsumption criteria (at any depth) with explicit code sets."""

    async def fn(c: Criterion) -> Criterion:
        match c:
            case ValueSetCriterion(param=p, value_set=url, negate=neg):
                codes, systems = await expand(ctx, url)
                return TokenSetCriterion(
                    p, tuple(sorted(codes, key=str)), tuple(sorted(systems)), neg
                )
            case SubsumptionCriterion(param=p, system=system, code=code, direction=d):
                if system is None:
                    raise BadRequest(f"':{d}' needs a system|code value", expression=[p])
                found = await subsumed(ctx, system, code, d)
                return TokenSetCriterion(p, tuple((system, x) for x in sorted(found)))
            case ChainCriterion() | HasCriterion():
                return dataclasses.replace(c, inner=await _clauses(c.inner, fn))
        return c

    if not _needs(query.clauses):
        return query
    return dataclasses.replace(query, clauses=await _clauses(query.clauses, fn))


def _needs(clauses: tuple[Clause, ...]) -> bool:
    for cl in clauses:
        for c in cl.criteria:
            if isinstance(c, ValueSetCriterion | SubsumptionCriterion):
                return True
            if isinstance(c, ChainCriterion | HasCriterion) and _needs(c.inner):
                return True
    return False
