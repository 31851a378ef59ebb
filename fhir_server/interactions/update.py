"""update (incl. update-as-create with a client id) and conditional update."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import BadRequest, PreconditionFailed
from fhir_server.interactions.common import (
    body_resource,
    check_id,
    check_if_match,
    precheck,
    prepare_write,
    store,
    write_response,
)
from fhir_server.interactions.conditional import find_matches
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.create import WriteResult, create_in
from fhir_server.storage.base import Method, Transaction


def check_update_id(rtype: str, id: str, resource: dict[str, Any]) -> None:
    check_id(id)
    body_id = resource.get("id")
    if body_id is None:
        raise BadRequest("The resource in an update must have an id", expression=[f"{rtype}.id"])
    if body_id != id:
        raise BadRequest(
            f"The resource id '{body_id}' does not match the URL id '{id}'",
            expression=[f"{rtype}.id"],
        )


async def update_in(
    ctx: Services,
    tx: Transaction,
    req: FhirRequest,
    rtype: str,
    id: str,
    resource: dict[str, Any],
    method: Method = "PUT",
    validated: bool = False,
) -> WriteResult:
    check_update_id(rtype, id, resource)
    current = await tx.read(rtype, id)
    check_if_match(req, current)
    version = current.version + 1 if current else 1
    write = prepare_write(
        ctx,
        resource,
        rtype,
        id,
        version,
        current.version if current else 0,
        method,
        validated=validated,
    )
    await store(ctx, tx, write)
    created = current is None or current.deleted
    return WriteResult(write.resource, 201 if created else 200)


async def conditional_update_in(
    ctx: Services,
    tx: Transaction,
    req: FhirRequest,
    rtype: str,
    resource: dict[str, Any],
    validated: bool = False,
) -> WriteResult:
    matches = await find_matches(ctx, tx, rtype, req.params, req.base_url)
    if len(matches) > 1:
        raise PreconditionFailed(f"The criteria match more than one {rtype}; be more selective")
    if matches:
        id = matches[0].id
        if "id" in resource and resource["id"] != id:
            raise BadRequest(
                f"The resource id '{resource['id']}' does not match the resource found ({id})",
                expression=[f"{rtype}.id"],
            )
        return await update_in(ctx, tx, req, rtype, id, {**resource, "id": id}, validated=validated)
    if "id" in resource:
        return await update_in(
            ctx, tx, req, rtype, str(resource["id"]), resource, validated=validated
        )
    return await create_in(ctx, tx, rtype, resource, req.base_url, validated=validated)


async def update(ctx: Services, req: FhirRequest, rtype: str, id: str | None) -> FhirResponse:
    resource = body_resource(req, rtype)
    if id is not None:
        check_update_id(rtype, id, resource)
    body_id = resource.get("id")
    precheck(ctx, resource, rtype, body_id if isinstance(body_id, str) else None)
    async with ctx.storage.transaction() as tx:
        if id is None:
            result = await conditional_update_in(ctx, tx, req, rtype, resource, validated=True)
        else:
            result = await update_in(ctx, tx, req, rtype, id, resource, validated=True)
    return write_response(req, result.stored, result.status, "Updated")
