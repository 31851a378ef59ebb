"""Maps a FhirRequest (method + path below the FHIR base) to its interaction.

The one table of what the server does lives in `capabilities.INTERACTIONS`; this module only routes.
"""

from __future__ import annotations

from fhir_server.auth import enforce
from fhir_server.errors import BadRequest, MethodNotAllowed, NotFound
from fhir_server.fhir.compartments import compartment_params, compartment_resource_types
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
from fhir_server.operations import TABLE as OPERATIONS
from fhir_server.operations import OperationTarget

COMPARTMENTS = ("Patient", "Encounter", "RelatedPerson", "Practitioner", "Device")


def _check_type(ctx: Services, rtype: str) -> None:
    if rtype not in ctx.resource_types:
        raise NotFound(f"Unknown resource type '{rtype}'", code="not-supported")


def _not_allowed(method: str, path: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"{method} is not allowed on '{path or '/'}'")


async def _operation(
    ctx: Services, req: FhirRequest, method: str, name: str, target: OperationTarget
) -> FhirResponse:
    op = OPERATIONS.find(name[1:], target)
    if op is None:
        where = f" on {target.rtype}" if target.rtype else ""
        where += f"/{target.id}" if target.id else ""
        level = "" if OPERATIONS.known(name[1:]) else "Unknown operation "
        if level:
            raise NotFound(f"{level}'{name}'{where}", code="not-supported")
        raise NotFound(
            f"Operation '{name}' is not defined at {target.level} level{where}",
            code="not-supported",
        )
    if method not in op.methods or (method == "GET" and op.affects_state):
        raise _not_allowed(method, req.path)
    return await op.handler(ctx, req, target)


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
    if head.startswith("$") and n == 1:
        return await _operation(ctx, req, m, head, OperationTarget())
    _check_type(ctx, head)
    rtype = head
    # SMART: 403 when no scope grants the interaction's letters (the storage view enforces all)
    needed = enforce.required(m, parts, req.header("if-none-exist") is not None)
    enforce.require(ctx, needed, parts[1] if n > 1 else None)
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
    if second.startswith("$") and n == 2:
        return await _operation(ctx, req, m, second, OperationTarget(rtype))
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
    if third.startswith("$") and n == 3:
        return await _operation(ctx, req, m, third, OperationTarget(rtype, id))
    is_post_search = n == 4 and parts[3] == "_search"
    if (n == 3 or is_post_search) and rtype in COMPARTMENTS:
        target = third
        members = compartment_resource_types(rtype)
        if target == "*":  # every type of the compartment (R4: [base]/Patient/[id]/*)
            types = tuple(t for t in members if compartment_params(rtype, t))
        else:
            _check_type(ctx, target)
            if target not in members:
                raise BadRequest(f"{target} is not in the {rtype} compartment")
            types = (target,)
        if m != ("POST" if is_post_search else "GET"):
            raise _not_allowed(m, req.path)
        return await search.search(ctx, req, f"{rtype}/{id}/{target}", types, (rtype, id))
    raise NotFound(f"No such path '{req.path}'")
