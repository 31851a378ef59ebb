"""search: type, system and compartment level, with keyset paging through signed page tokens."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from fhir_server.errors import BadRequest, Issue, NotFound, operation_outcome
from fhir_server.fhir import jsonio
from fhir_server.fhir.compartments import compartment_params
from fhir_server.interactions.bundles import bundle, full_url, page_url, resource_fragment
from fhir_server.interactions.common import prefer_lenient
from fhir_server.interactions.conditional import search_context
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.subsetting import subset
from fhir_server.interactions.terminology import resolve_terminology
from fhir_server.search.parse import parse_search
from fhir_server.search.query import (
    Clause,
    CompartmentCriterion,
    ReferenceCriterion,
    SearchQuery,
)
from fhir_server.storage.base import StoredResource


def _compartment_clause(ctype: str, cid: str, types: tuple[str, ...]) -> Clause:
    if len(types) != 1:  # `Patient/1/*`: every type of the compartment, each by its own params
        members = tuple((t, compartment_params(ctype, t)) for t in types)
        return Clause((CompartmentCriterion(ctype, cid, members),))
    rtype = types[0]
    params = compartment_params(ctype, rtype)
    if not params:
        raise NotFound(f"{rtype} is not in the {ctype} compartment")
    return Clause(tuple(ReferenceCriterion(p, ctype, cid) for p in params))


def _entry(req: FhirRequest, stored: StoredResource, mode: str, summary: str | None,
           elements: list[str] | None) -> dict[str, Any]:  # fmt: skip
    if summary or elements is not None:
        res: Any = orjson.Fragment(jsonio.dumps(subset(jsonio.loads_own(stored.body),
                                                       summary, elements)))  # fmt: skip
    else:
        res = resource_fragment(stored)
    return {"fullUrl": full_url(req.base_url, stored), "resource": res, "search": {"mode": mode}}


async def search(
    ctx: Services,
    req: FhirRequest,
    path: str,
    types: tuple[str, ...],
    compartment: tuple[str, str] | None = None,
) -> FhirResponse:
    params = req.params
    after: tuple[object, ...] | None = None
    before: tuple[object, ...] | None = None
    snapshot: int | None = None
    token = req.param("_page")
    if token is not None:
        state = ctx.pages.verify(token)
        if state.get("p") != path:
            raise BadRequest("This page token belongs to another search", expression=["_page"])
        params = [(k, v) for k, v in state["q"]]
        snapshot = state["s"]
        if state.get("d") == "prev":
            before = tuple(state["c"])
        else:
            after = tuple(state["c"])
    type_param = next((v for k, v in params if k == "_type"), None)
    if type_param is not None and types:
        raise BadRequest(
            "_type applies to system-level search only; this search is of " + ",".join(types),
            expression=["_type"],
        )
    if type_param is not None:
        wanted = tuple(t for t in type_param.split(",") if t)
        unknown = [t for t in wanted if t not in ctx.resource_types]
        if unknown:
            raise BadRequest(f"Unknown resource type(s) in _type: {', '.join(unknown)}",
                             expression=["_type"])  # fmt: skip
        types = wanted
    lenient = prefer_lenient(req)
    parsed = parse_search(search_context(ctx, req.base_url, lenient), types, params,
                          default_count=ctx.settings.default_count,
                          max_count=ctx.settings.max_count)  # fmt: skip
    query: SearchQuery = parsed.query
    if compartment is not None:
        ctype, cid = compartment
        query = dataclasses.replace(query, clauses=(_compartment_clause(ctype, cid, types),
                                                    *query.clauses))  # fmt: skip
    query = dataclasses.replace(query, after=after, before=before, snapshot=snapshot)
    query = await resolve_terminology(ctx, query)
    page = await ctx.storage.search(query)

    entries = [_entry(req, m, "match", parsed.summary, parsed.elements) for m in page.matches]
    entries += [_entry(req, m, "include", parsed.summary, parsed.elements) for m in page.included]
    if parsed.ignored:
        text = "Ignored unknown search parameters: " + ", ".join(parsed.ignored)
        oo = operation_outcome([Issue("warning", "not-supported", text, parsed.ignored)])
        entries.append({"resource": oo, "search": {"mode": "outcome"}})
    # The links carry what was applied: parameters ignored under lenient handling are left out
    # (R4: the self link shows the parameters used), so following them needs no Prefer header.
    clean = [(k, v) for k, v in params if k != "_page" and k not in parsed.ignored]
    self_params = req.params if token is not None else clean
    links = [("self", page_url(req.base_url, path, self_params))]
    links.append(("first", page_url(req.base_url, path, clean)))
    for relation, direction, cursor in (
        ("previous", "prev", page.prev_cursor),
        ("next", "next", page.next_cursor),
    ):
        if cursor is not None:
            state = {"p": path, "q": clean, "d": direction, "c": list(cursor), "s": page.snapshot}
            links.append(
                (relation, page_url(req.base_url, path, [("_page", ctx.pages.sign(state))]))
            )
    body = bundle("searchset", ctx.clock.now_us(), entries, links, page.total)
    return FhirResponse(200, jsonio.dumps(body), {})
