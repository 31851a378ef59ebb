"""delete and conditional delete. A deletion is a new version: history keeps what was there."""

from __future__ import annotations

from fhir_server.conformance import check_writable
from fhir_server.errors import PreconditionFailed
from fhir_server.interactions.common import (
    check_id,
    check_if_match,
    deletion,
    store,
    version_headers,
)
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.storage.base import StoredResource, Transaction


async def delete_in(
    ctx: Services, tx: Transaction, req: FhirRequest, rtype: str, id: str
) -> StoredResource | None:
    """The deletion version written, or None when there was nothing to delete."""
    check_id(id)
    check_writable(ctx.read_only, rtype, id)  # the server's own conformance resources
    current = await tx.read(rtype, id)
    check_if_match(req, current)
    if current is None or current.deleted:
        return None
    write = deletion(ctx, current)
    await store(ctx, tx, write)
    return write.resource


async def conditional_delete_in(
    ctx: Services, tx: Transaction, req: FhirRequest, rtype: str
) -> StoredResource | None:
    matches = await find_matches(ctx, tx, rtype, req.params, req.base_url)
    if len(matches) > 1:
        raise PreconditionFailed(
            f"The criteria match more than one {rtype}; this server deletes one at a time"
        )
    if not matches:
        return None
    return await delete_in(ctx, tx, req, rtype, matches[0].id)


async def delete(ctx: Services, req: FhirRequest, rtype: str, id: str | None) -> FhirResponse:
    async with ctx.storage.transaction() as tx:
        if id is None:
            deleted = await conditional_delete_in(ctx, tx, req, rtype)
        else:
            deleted = await delete_in(ctx, tx, req, rtype, id)
    # R4: 204 whether the resource was deleted now, was already deleted, or never existed.
    return FhirResponse(204, None, version_headers(deleted) if deleted else {})
