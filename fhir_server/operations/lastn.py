"""`Observation/$lastn` (R4 OperationDefinition Observation-lastn): the latest `max` Observations
per code per patient, answered from the search indexes.

Groups follow the R4 rules: codings are equal when system and code are; an Observation with several
codings joins them into one group (transitively); text-only codes group by their exact text. The
codes present are found by a skip-scan over the `date` index: the newest matching Observation names
a group, the next search excludes that group's codings (`code:not`), and so on, so the cost grows
with the number of codes, not of readings. Then each group's newest `max` readings (and any ties
with the last of them) are one sorted search.

Ties: the OperationDefinition says "In case of a tie - when the effective times for >1
Observations are equal - both will be returned. Therefore, more Observations may be returned than
is specified in *max*." So a group can hold more than `max` readings: three weights taken at the
same effectiveDateTime are all returned with `max=1`. Tied readings are ordered by
`meta.lastUpdated`, then id (newest/highest first), so the answer is deterministic. Observations linking groups that were found apart
are merged as far as the readings fetched show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import tzinfo
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import DATE_MIN, parse_fhir_datetime_range
from fhir_server.interactions.bundles import bundle, full_url, page_url, resource_fragment
from fhir_server.interactions.conditional import search_context
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.subsetting import subset
from fhir_server.interactions.terminology import resolve_terminology
from fhir_server.operations.params import operation_params, single
from fhir_server.operations.registry import Operation, OperationTarget
from fhir_server.search.parse import parse_search
from fhir_server.search.query import Clause, SearchQuery, SortKey, TokenCriterion
from fhir_server.storage.base import StoredResource

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Observation-lastn"
_CODE_PARAMS = frozenset({
    "category", "code", "combo-code", "code-value-concept", "code-value-date",
    "code-value-quantity", "code-value-string", "combo-code-value-concept",
    "combo-code-value-quantity",
})  # fmt: skip
_SUBJECT_PARAMS = ("patient", "subject")
_SKIPPED = frozenset({"max", "_sort", "_count", "_page", "_total", "_include", "_revinclude"})
_DISCOVERY_PAGE = 100
_MAX_GROUPS = 1000
Coding = tuple[str | None, str]


@dataclasses.dataclass
class _Hit:
    stored: StoredResource
    when: int  # end of the effective time (µs), the order of a descending `date` sort
    codings: tuple[Coding, ...]
    text: str | None


def _when(effective: object, tz: tzinfo) -> int:
    try:
        return parse_fhir_datetime_range(str(effective), tz)[1] if effective else DATE_MIN
    except ValueError:
        return DATE_MIN


def _hit(stored: StoredResource, tz: tzinfo) -> _Hit:
    obs: dict[str, Any] = jsonio.loads(stored.body)
    raw_code = obs.get("code")
    code: dict[str, Any] = raw_code if isinstance(raw_code, dict) else {}
    codings = tuple(
        (c.get("system"), str(c["code"]))
        for c in code.get("coding", [])
        if isinstance(c, dict) and c.get("code") is not None
    )
    raw_period = obs.get("effectivePeriod")
    period: dict[str, Any] = raw_period if isinstance(raw_period, dict) else {}
    effective = obs.get("effectiveDateTime") or obs.get("effectiveInstant") or period.get("start")
    return _Hit(stored, _when(effective, tz), codings, code.get("text"))


class _Groups:
    """Union-find over codings: each group is a set of codings that must be reported together."""

    def __init__(self) -> None:
        self.parent: dict[Coding, Coding] = {}

    def find(self, c: Coding) -> Coding:
        self.parent.setdefault(c, c)
        while self.parent[c] != c:
            self.parent[c] = self.parent[self.parent[c]]
            c = self.parent[c]
        return c

    def join(self, codings: Iterable[Coding]) -> None:
        roots = [self.find(c) for c in codings]
        for r in roots[1:]:
            self.parent[r] = roots[0]

    def members(self, root: Coding) -> list[Coding]:
        return [c for c in self.parent if self.find(c) == root]


def _token(c: Coding, negate: bool = False) -> TokenCriterion:
    return TokenCriterion("code", c[0], c[1], negate=negate)


def _sorted_desc(query: SearchQuery, extra: tuple[Clause, ...], count: int) -> SearchQuery:
    return dataclasses.replace(
        query,
        clauses=(*query.clauses, *extra),
        sort=(SortKey("date", "date", True),),
        count=count,
        includes=(),
        total="none",
        after=None,
        before=None,
    )


async def _discover(ctx: Services, base: SearchQuery, groups: _Groups) -> list[_Hit]:
    """Find every code group among the matches; returns the text-only Observations seen."""
    text_only: dict[str, _Hit] = {}
    cursor: tuple[object, ...] | None = None
    snapshot: int | None = None
    while len(groups.parent) < _MAX_GROUPS:
        excluded = tuple(Clause((_token(c, negate=True),)) for c in groups.parent)
        query = dataclasses.replace(_sorted_desc(base, excluded, _DISCOVERY_PAGE),
                                    after=cursor, snapshot=snapshot)  # fmt: skip
        page = await ctx.storage.search(query)
        snapshot = page.snapshot
        found_new = False
        for stored in page.matches:
            hit = _hit(stored, ctx.tz)
            if not hit.codings:
                text_only[stored.id] = hit
                continue
            found_new = found_new or any(c not in groups.parent for c in hit.codings)
            groups.join(hit.codings)
        if found_new:
            cursor = None  # search again with the new exclusions
        elif page.next_cursor is not None and page.matches:
            cursor = page.next_cursor  # only text-only codes on this page: read on
        else:
            break
    return list(text_only.values())


def _latest(hits: list[_Hit], n: int) -> list[_Hit]:
    """The newest `n`, plus any tied with the n-th (R4: ties are all returned), newest first;
    readings with the same effective time by `meta.lastUpdated`, then id, newest/highest first."""
    ordered = sorted(hits, key=lambda h: (h.when, h.stored.last_updated, h.stored.id),
                     reverse=True)  # fmt: skip
    if len(ordered) <= n:
        return ordered
    cut = ordered[n - 1].when
    return [h for i, h in enumerate(ordered) if i < n or h.when == cut]


async def _group_hits(
    ctx: Services, base: SearchQuery, codings: list[Coding], n: int
) -> list[_Hit]:
    """The group's newest readings: enough pages to cover `n` and the ties after the n-th."""
    query = _sorted_desc(base, (Clause(tuple(_token(c) for c in codings)),), n + 1)
    hits: list[_Hit] = []
    while True:
        page = await ctx.storage.search(query)
        hits.extend(_hit(s, ctx.tz) for s in page.matches)
        if page.next_cursor is None or len(hits) <= n or hits[-1].when != hits[n - 1].when:
            return hits
        query = dataclasses.replace(query, after=page.next_cursor, snapshot=page.snapshot)


async def _lastn_for(ctx: Services, base: SearchQuery, n: int) -> list[StoredResource]:
    groups = _Groups()
    text_only = await _discover(ctx, base, groups)
    roots = sorted({groups.find(c) for c in groups.parent}, key=str)
    fetched: list[_Hit] = []
    for root in roots:
        fetched.extend(await _group_hits(ctx, base, groups.members(root), n))
    for hit in fetched:  # readings that bridge groups found apart merge them
        groups.join(hit.codings)
    by_group: dict[object, dict[str, _Hit]] = {}
    for hit in fetched:
        by_group.setdefault(groups.find(hit.codings[0]), {})[hit.stored.id] = hit
    for hit in text_only:
        by_group.setdefault(("text", hit.text or ""), {})[hit.stored.id] = hit
    chosen = [_latest(list(g.values()), n) for g in by_group.values()]
    chosen.sort(key=lambda hs: hs[0].when if hs else DATE_MIN, reverse=True)
    return [h.stored for hs in chosen for h in hs]


def _resource(stored: StoredResource, summary: str | None, elements: list[str] | None) -> Any:
    """The stored bytes as they are, or the `_summary`/`_elements` subset of them."""
    if summary is None and elements is None:
        return resource_fragment(stored)
    return subset(jsonio.loads(stored.body), summary, elements)


def _max(params: list[tuple[str, str]]) -> int:
    text = single(params, "max")
    if text is None:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"max must be a positive integer, not '{text}'", expression=["max"])
    return int(text)


def _is_subject(key: str) -> bool:
    """`patient`, `subject`, with a modifier (`subject:Patient`) or a chain (`patient.name`)."""
    return key.split(":", 1)[0].split(".", 1)[0] in _SUBJECT_PARAMS


def _subjects(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each patient/subject value on its own, so groups are per patient."""
    out: list[tuple[str, str]] = []
    for key, value in params:
        if _is_subject(key):
            out.extend((key, v) for v in value.split(",") if v)
    return out


async def lastn(ctx: Services, req: FhirRequest, target: OperationTarget) -> FhirResponse:
    params = operation_params(req)
    n = _max(params)
    subjects = _subjects(params)
    if not subjects and req.grant is not None and req.grant.patient:
        subjects = [("patient", req.grant.patient)]  # the patient in the token's launch context
    if not subjects:
        raise BadRequest("$lastn needs a patient or subject parameter", expression=["patient"])
    names = {k.split(":", 1)[0] for k, _ in params}
    if not names & _CODE_PARAMS:
        raise BadRequest("$lastn needs a category or a code parameter", expression=["category"])
    others = [(k, v) for k, v in params if k not in _SKIPPED and not _is_subject(k)]
    sctx = search_context(ctx, req.base_url)
    results: list[StoredResource] = []
    seen: set[str] = set()
    summary: str | None = None
    elements: list[str] | None = None
    for key, value in subjects:
        parsed = parse_search(sctx, ("Observation",), [(key, value), *others],
                              default_count=n, max_count=max(n, ctx.settings.max_count))  # fmt: skip
        summary, elements = parsed.summary, parsed.elements
        base = await resolve_terminology(ctx, parsed.query)
        for stored in await _lastn_for(ctx, base, n):
            if stored.id not in seen:
                seen.add(stored.id)
                results.append(stored)
    entries = [
        {"fullUrl": full_url(req.base_url, s), "resource": _resource(s, summary, elements),
         "search": {"mode": "match"}}
        for s in results
    ]  # fmt: skip
    links = [("self", page_url(req.base_url, req.path, req.params))]
    body = bundle("searchset", ctx.clock.now_us(), entries, links, len(entries))
    return FhirResponse(200, jsonio.dumps(body), {})


OPERATIONS = [
    Operation(
        "lastn",
        lastn,
        type_level=True,
        types=frozenset({"Observation"}),
        definition=DEFINITION,
    )
]
