"""One catch-all route under /fhir: parse the HTTP request, dispatch, serialise the answer.

A single route with the project's own router keeps per-request overhead low (no per-path
validation models) and keeps the batch processor and HTTP on the same code path.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_server.api import negotiation
from fhir_server.auth.enforce import scoped_services
from fhir_server.auth.grant import AccessGrant
from fhir_server.errors import (
    BadRequest,
    FhirError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from fhir_server.fhir import jsonio
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.router import dispatch

log = logging.getLogger("fhir_server")
router = APIRouter()
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def base_url(services: Services, request: Request) -> str:
    host = request.headers.get("host") or f"{services.settings.host}:{services.settings.port}"
    return services.settings.fhir_base(f"{request.url.scheme}://{host}")


async def to_fhir_request(services: Services, request: Request, path: str) -> FhirRequest:
    params = parse_qsl(request.url.query, keep_blank_values=True)
    body: Any = None
    if request.method in ("POST", "PUT", "PATCH"):
        raw = await _read_body(request, services.settings.max_request_bytes)
        is_search = request.method == "POST" and (path == "_search" or path.endswith("/_search"))
        is_form = negotiation.check_body_type(
            request.headers.get("content-type"), form_allowed=is_search
        )
        if is_form:
            params += parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        elif is_search and raw.strip():  # a JSON body would be ignored: never search unfiltered
            raise UnsupportedMediaType(
                "POST _search takes its parameters as a form body "
                f"(Content-Type: {negotiation.FORM}) or in the URL"
            )
        elif raw.strip():
            body = jsonio.loads(raw, max_depth=services.settings.max_json_depth)
        elif request.method != "POST" or not is_search:
            raise BadRequest("The request has no body")
    headers = {k.lower(): v for k, v in request.headers.items()}
    return FhirRequest(
        request.method,
        path,
        params,
        headers,
        body,
        base_url(services, request),
        raw_query=request.url.query,
    )


def to_response(resp: FhirResponse, media_type: str, head: bool = False) -> Response:
    body = b"" if head or resp.body is None else resp.body
    headers = dict(resp.headers)
    if resp.body is not None and "Content-Type" not in headers:  # CSV operations set their own
        headers["Content-Type"] = f"{media_type}; charset=utf-8"
    return Response(content=body, status_code=resp.status, headers=headers)


def error_response(err: FhirError, media_type: str = negotiation.FHIR_JSON) -> Response:
    return Response(
        content=jsonio.dumps(err.outcome()),
        status_code=err.status,
        headers={**err.headers, "Content-Type": f"{media_type}; charset=utf-8"},
    )


def is_public(method: str, path: str) -> bool:
    """Paths served without a token: the CapabilityStatement and SMART discovery."""
    path = path.strip("/")
    if method in ("GET", "HEAD") and path == "metadata":
        return True
    return path.startswith(".well-known/")


async def authenticate(services: Services, request: Request, path: str) -> AccessGrant | None:
    """The caller's grant (None when authorization is off or the path is public); 401 with
    `WWW-Authenticate` when the token is missing or not accepted."""
    if services.authenticate is None or is_public(request.method, path):
        return None
    try:
        return await services.authenticate(request.headers.get("authorization"))
    except Unauthorized as err:
        if not any(k.lower() == "www-authenticate" for k in err.headers):
            err.headers["WWW-Authenticate"] = 'Bearer realm="fhir"'
        raise


@router.api_route("/fhir", methods=_METHODS, include_in_schema=False)
@router.api_route("/fhir/{path:path}", methods=_METHODS, include_in_schema=False)
async def fhir_endpoint(request: Request, path: str = "") -> Response:
    services: Services = request.app.state.services
    media_type = negotiation.FHIR_JSON
    try:
        accept, fmt = request.headers.get("accept"), request.query_params.get("_format")
        media_type = negotiation.response_type(accept, fmt)
        media_type = negotiation.csv_only_for_operations(
            media_type, request.method, path, accept, fmt
        )
        grant = await authenticate(services, request, path)
        req = await to_fhir_request(services, request, path.strip("/"))
        ctx = services
        if grant is not None:
            req.grant = grant
            ctx = scoped_services(services, grant, req.base_url)  # the one decision point
        resp = await dispatch(ctx, req)
        media_type = negotiation.csv_if_produced(
            media_type, resp.headers.get("Content-Type"), accept, fmt
        )
        return to_response(resp, media_type, head=request.method == "HEAD")
    except FhirError as err:
        return error_response(err, negotiation.error_type(media_type))
