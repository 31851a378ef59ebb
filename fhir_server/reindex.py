"""Re-extracting the search index of stored resources (after SearchParameters were added)."""

from __future__ import annotations

from collections.abc import Callable

from fhir_server.fhir import jsonio
from fhir_server.fhir.fulltext import fulltext_values
from fhir_server.interactions.context import Services
from fhir_server.search.query import SearchQuery

BATCH = 500


async def reindex(
    ctx: Services, types: list[str] | None = None, progress: Callable[[int], None] | None = None
) -> int:
    """Re-extract every current resource of `types` (all types if None); returns how many."""
    done = 0
    for rtype in types or sorted(ctx.resource_types):
        extract = ctx.registry.extractor(rtype)
        after: tuple[object, ...] | None = None
        while True:
            page = await ctx.storage.search(SearchQuery((rtype,), count=BATCH, after=after))
            batch = []
            for stored in page.matches:
                resource = jsonio.loads_own(stored.body)
                batch.append((stored, [*extract(resource), *fulltext_values(resource)]))
            if batch:
                await ctx.storage.reindex(batch)
                done += len(batch)
                if progress:
                    progress(len(batch))
            if page.next_cursor is None:
                break
            after = page.next_cursor
    return done
