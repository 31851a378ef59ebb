"""create, and conditional create (If-None-Exist)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.errors import PreconditionFailed
from fhir_server.interactions.common import (
    body_resource,
    new_resource_id,
    precheck,
    prepare_write,
    store,
    write_response,
)
from fhir_server.interactions.conditional import find_matches, parse_criteria
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.storage.base import StoredResource, Transaction


@dataclass
class WriteResult:
    stored: StoredResource
    status: int  # 201 created, 200 updated or matched


async def create_in(
    ctx: Services,
    tx: Transaction,
    rtype: str,
    resource: dict[str, Any],
    base_url: str,
    if_none_exist: str | None = None,
    new_id: str | None = None,
    validated: bool = False,
) -> WriteResult:
    """Create inside `tx`; with If-None-Exist an existing match is returned instead (200)."""
    if if_none_exist:
        matches = await find_matches(ctx, tx, rtype, parse_criteria(if_none_exist), base_url)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"If-None-Exist criteria '{if_none_exist}' match more than one {rtype}"
            )
        if matches:
            return WriteResult(matches[0], 200)
    id = new_id or new_resource_id()
    write = prepare_write(ctx, resource, rtype, id, 1, 0, "POST", validated=validated)
    await store(ctx, tx, write)
    return WriteResult(write.resource, 201)


async def create(ctx: Services, req: FhirRequest, rtype: str) -> FhirResponse:
    resource = body_resource(req, rtype)
    precheck(ctx, resource, rtype)
    async with ctx.storage.transaction() as tx:
        result = await create_in(
            ctx, tx, rtype, resource, req.base_url, req.header("if-none-exist"), validated=True
        )
    text = "Created" if result.status == 201 else "A matching resource already exists"
    return write_response(req, result.stored, result.status, text)
