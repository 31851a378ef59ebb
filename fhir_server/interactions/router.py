"""Maps a FhirRequest (method + path below the FHIR base) to its interaction.

The one table of what the server does lives in `capabilities.INTERACTIONS`; this module only routes.
"""

from __future__ import annotations

from fhir_server.errors import BadRequest, MethodNotAllowed, NotFound
from fhir_server.fhir.compartments import compartment_resource_types
from fhir_server.interactions import (
    capabilities,
    create,
    delete,
    history,
    patch,
    read,
    search,
    transaction,
    update,
)
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services

COMPARTMENTS = ("Patient", "Encounter", "RelatedPerson", "Practitioner", "Device")


def _check_type(ctx: Services, rtype: str) -> None:
    if rtype not in ctx.resource_types:
        raise NotFound(f"Unknown resource type '{rtype}'", code="not-supported")


def _not_allowed(method: str, path: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"{method} is not allowed on '{path or '/'}'")


async def dispatch(ctx: Services, req: FhirRequest) -> FhirResponse:
    parts = [p for p in req.path.split("/") if p]
    m = "GET" if req.method == "HEAD" else req.method  # the HTTP layer drops HEAD's body
    n = len(parts)
    if n == 0:
        if m == "POST":
            return await transaction.process(ctx, req)
        if m == "GET":
            return await search.search(ctx, req, "", ())
        raise _not_allowed(m, req.path)
    head = parts[0]
    if head == "metadata" and n == 1:
        if m != "GET":
            raise _not_allowed(m, req.path)
        return capabilities.respond(ctx, req)
    if head == "_history" and n == 1:
        if m != "GET":
            raise _not_allowed(m, req.path)
        return await history.history(ctx, req, "_history", None, None)
    if head == "_search" and n == 1 and m == "POST":
        return await search.search(ctx, req, "", ())
    if head.startswith("$"):
        raise NotFound(f"Unknown operation '{head}'", code="not-supported")
    _check_type(ctx, head)
    rtype = head
    if n == 1:
        if m == "GET":
            return await search.search(ctx, req, rtype, (rtype,))
        if m == "POST":
            return await create.create(ctx, req, rtype)
        if m == "PUT":
            return await update.update(ctx, req, rtype, None)
        if m == "DELETE":
            return await delete.delete(ctx, req, rtype, None)
        if m == "PATCH":
            return await patch.patch(ctx, req, rtype, None)
        raise _not_allowed(m, req.path)
    second = parts[1]
    if n == 2 and second == "_search":
        if m != "POST":
            raise _not_allowed(m, req.path)
        return await search.search(ctx, req, rtype, (rtype,))
    if n == 2 and second == "_history":
        if m != "GET":
            raise _not_allowed(m, req.path)
        return await history.history(ctx, req, f"{rtype}/_history", rtype, None)
    if second.startswith("$"):
        raise NotFound(f"Unknown operation '{second}' on {rtype}", code="not-supported")
    id = second
    if n == 2:
        if m == "GET":
            return await read.read(ctx, req, rtype, id)
        if m == "PUT":
            return await update.update(ctx, req, rtype, id)
        if m == "DELETE":
            return await delete.delete(ctx, req, rtype, id)
        if m == "PATCH":
            return await patch.patch(ctx, req, rtype, id)
        raise _not_allowed(m, req.path)
    third = parts[2]
    if third == "_history" and n in (3, 4):
        if m != "GET":
            raise _not_allowed(m, req.path)
        if n == 3:
            return await history.history(ctx, req, f"{rtype}/{id}/_history", rtype, id)
        return await read.vread(ctx, req, rtype, id, parts[3])
    if third.startswith("$"):
        raise NotFound(f"Unknown operation '{third}' on {rtype}/{id}", code="not-supported")
    if n == 3 and rtype in COMPARTMENTS:
        target = third
        if target != "*":
            _check_type(ctx, target)
        if target not in compartment_resource_types(rtype):
            raise BadRequest(f"{target} is not in the {rtype} compartment")
        if m != "GET":
            raise _not_allowed(m, req.path)
        return await search.search(ctx, req, f"{rtype}/{id}/{target}", (target,), (rtype, id))
    raise NotFound(f"No such path '{req.path}'")
