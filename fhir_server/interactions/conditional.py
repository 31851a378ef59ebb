"""Resolving search criteria for conditional create, update, delete and conditional references.

Written once here on top of search, not in every engine.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import BadRequest, Conflict
from fhir_server.interactions.context import Services
from fhir_server.search.parse import RESULT_PARAMS, SearchContext, parse_search
from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import Searcher, SearchPage, StoredResource


def search_context(ctx: Services, base_url: str, lenient: bool = False) -> SearchContext:
    return SearchContext(ctx.registry, ctx.tz, base_url, lenient, ctx.resource_types)


async def find_matches(
    ctx: Services,
    tx: Searcher,
    rtype: str,
    params: list[tuple[str, str]],
    base_url: str,
    limit: int = 2,
) -> list[StoredResource]:
    """Up to `limit` current resources of `rtype` matching the criteria, as `tx` sees them."""
    criteria = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    if not criteria:
        raise BadRequest("Conditional interaction without search criteria")
    shaping = sorted({k for k, _ in criteria if k.split(":", 1)[0] in RESULT_PARAMS})
    if shaping:  # they would pick which matches are seen: the match must count them all
        raise BadRequest(
            "Conditional criteria cannot use the result parameters "
            f"{', '.join(shaping)}: only search criteria select the resource",
            expression=shaping,
        )
    parsed = parse_search(
        search_context(ctx, base_url), (rtype,), criteria, default_count=limit, max_count=limit
    )
    from fhir_server.interactions.terminology import resolve_terminology

    page = await tx.search(await resolve_terminology(ctx, parsed.query))
    return page.matches


def parse_criteria(text: str) -> list[tuple[str, str]]:
    """`identifier=x&name=y` (a header value or the query part of a URL) as parameter pairs."""
    head, sep, rest = text.partition("?")
    if sep and "=" not in head and "&" not in head:
        text = rest  # `Patient?identifier=x`: the type prefix is accepted leniently
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequest(f"Malformed search criteria '{text}'") from None


class RecordedSearches:
    """Searches made on committed data ahead of a storage transaction, made again inside it.

    A transaction Bundle resolves its conditional references and If-None-Exist criteria, and
    prepares its creates, before it takes the storage lock, so that other Bundles' stores go on
    meanwhile. `confirm` then repeats each search inside the transaction: if a concurrent write
    changed any answer, what was prepared from it is stale and the Bundle is refused with 409.
    """

    def __init__(self, storage: Searcher) -> None:
        self._storage = storage
        self._seen: list[tuple[SearchQuery, list[tuple[str, str]]]] = []

    async def search(self, query: SearchQuery) -> SearchPage:
        page = await self._storage.search(query)
        self._seen.append((query, _identities(page)))
        return page

    async def confirm(self, tx: Searcher) -> None:
        for query, before in self._seen:
            if _identities(await tx.search(query)) != before:
                raise Conflict(
                    "A concurrent write changed what this Bundle's conditional references or "
                    "criteria match while it was being processed; nothing was stored. Retry it."
                )


def _identities(page: SearchPage) -> list[tuple[str, str]]:
    return sorted((m.resource_type, m.id) for m in page.matches)
