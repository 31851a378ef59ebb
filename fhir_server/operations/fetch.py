"""Storage reads the operations share. Everything goes through `ctx.storage`, so whatever view of
the store the request has (authorization scopes) applies to operations too."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from fhir_server.errors import Gone, NotFound
from fhir_server.interactions.common import check_id
from fhir_server.interactions.context import Services
from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import StoredResource

PAGE = 500


async def search_all(ctx: Services, query: SearchQuery) -> AsyncIterator[StoredResource]:
    """Every match of `query`, page by page (keyset cursors), in one snapshot."""
    query = dataclasses.replace(query, count=query.count or PAGE)
    while True:
        page = await ctx.storage.search(query)
        for match in page.matches:
            yield match
        if page.next_cursor is None or not page.matches:
            return
        query = dataclasses.replace(query, after=page.next_cursor, snapshot=page.snapshot)


async def read_current(ctx: Services, rtype: str, id: str) -> StoredResource:
    check_id(id)
    stored = await ctx.storage.read(rtype, id)
    if stored is None:
        raise NotFound(f"{rtype}/{id} is not known")
    if stored.deleted:
        raise Gone(f"{rtype}/{id} was deleted")
    return stored
