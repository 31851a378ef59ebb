"""read and vread: the stored bytes, as they are."""

from __future__ import annotations

from fhir_server.errors import BadRequest, Gone, NotFound
from fhir_server.interactions.common import check_id, parse_etag, version_headers
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.subsetting import subset_body
from fhir_server.storage.base import StoredResource


def _respond(req: FhirRequest, stored: StoredResource) -> FhirResponse:
    headers = version_headers(stored)
    inm = req.header("if-none-match")
    if inm is not None and parse_etag(inm, "If-None-Match") == stored.version:
        return FhirResponse(304, None, headers)
    body = subset_body(stored.body, req.param("_summary"), req.param("_elements"))
    return FhirResponse(200, body, headers)


async def read(ctx: Services, req: FhirRequest, rtype: str, id: str) -> FhirResponse:
    check_id(id)
    stored = await ctx.storage.read(rtype, id)
    if stored is None:
        raise NotFound(f"{rtype}/{id} is not known")
    if stored.deleted:
        raise Gone(f"{rtype}/{id} was deleted", headers=version_headers(stored))
    return _respond(req, stored)


async def vread(ctx: Services, req: FhirRequest, rtype: str, id: str, vid: str) -> FhirResponse:
    check_id(id)
    if not vid.isdigit():
        raise BadRequest(f"Invalid version id '{vid}'")
    stored = await ctx.storage.vread(rtype, id, int(vid))
    if stored is None:
        raise NotFound(f"{rtype}/{id}/_history/{vid} is not known")
    if stored.deleted:
        raise Gone(f"{rtype}/{id} version {vid} is a deletion", headers=version_headers(stored))
    return _respond(req, stored)
