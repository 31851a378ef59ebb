"""Resolving search criteria for conditional create, update, delete and conditional references.

Written once here on top of search, not in every engine.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import BadRequest
from fhir_server.interactions.context import Services
from fhir_server.search.parse import RESULT_PARAMS, SearchContext, parse_search
from fhir_server.storage.base import StoredResource, Transaction


def search_context(ctx: Services, base_url: str, lenient: bool = False) -> SearchContext:
    return SearchContext(ctx.registry, ctx.tz, base_url, lenient, ctx.resource_types)


async def find_matches(
    ctx: Services,
    tx: Transaction,
    rtype: str,
    params: list[tuple[str, str]],
    base_url: str,
    limit: int = 2,
) -> list[StoredResource]:
    """Up to `limit` current resources of `rtype` matching the criteria, read inside `tx`."""
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
