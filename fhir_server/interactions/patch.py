"""patch with JSON Patch (application/json-patch+json): applied, validated, stored as an update."""

from __future__ import annotations

from fhir_server.conformance import check_writable
from fhir_server.errors import BadRequest, Gone, NotFound, PreconditionFailed, UnsupportedMediaType
from fhir_server.fhir import jsonio
from fhir_server.fhir.jsonpatch import apply_patch
from fhir_server.interactions.common import (
    check_id,
    check_if_match,
    prepare_write,
    store,
    write_response,
)
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.create import WriteResult
from fhir_server.storage.base import Transaction


async def patch_in(
    ctx: Services, tx: Transaction, req: FhirRequest, rtype: str, id: str | None
) -> WriteResult:
    if id is None:
        matches = await find_matches(ctx, tx, rtype, req.params, req.base_url)
        if len(matches) != 1:
            raise PreconditionFailed(
                f"Conditional patch criteria match {len(matches) or 'no'} {rtype} resources"
            )
        id = matches[0].id
    check_id(id)
    check_writable(ctx.read_only, rtype, id)  # the server's own conformance resources
    current = await tx.read(rtype, id)
    if current is None:
        raise NotFound(f"{rtype}/{id} is not known")
    if current.deleted:
        raise Gone(f"{rtype}/{id} was deleted")
    check_if_match(req, current)
    patched = apply_patch(jsonio.loads_own(current.body), req.body)
    if not isinstance(patched, dict) or patched.get("resourceType") != rtype:
        raise BadRequest("The patch must not change the resource type")
    if patched.get("id") != id:
        raise BadRequest("The patch must not change the resource id")
    write = prepare_write(ctx, patched, rtype, id, current.version + 1, current.version, "PATCH")
    await store(ctx, tx, write)
    return WriteResult(write.resource, 200)


async def patch(ctx: Services, req: FhirRequest, rtype: str, id: str | None) -> FhirResponse:
    content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
    if content_type not in ("application/json-patch+json", ""):
        raise UnsupportedMediaType(
            f"PATCH takes JSON Patch (application/json-patch+json), not '{content_type}'"
        )
    async with ctx.storage.transaction() as tx:
        result = await patch_in(ctx, tx, req, rtype, id)
    return write_response(req, result.stored, result.status, "Patched")
