"""HTTP routes of the SMART authorization server: discovery, /auth/* and the uvicorn access-log
filter that keeps codes, states and launch handles of /auth URLs out of the logs.

OAuth endpoints answer OAuth JSON (RFC 6749 §5.2), not OperationOutcome. When settings.auth is
"off" there is no authorization server and these routes answer 404.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fhir_server.auth.server import authorize, discovery, endpoints, pages, token_endpoint
from fhir_server.auth.server.core import AuthServer
from fhir_server.auth.server.errors import OAuthError
from fhir_server.interactions.context import Services
from fhir_server.search.query import SearchQuery

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept",
    "Access-Control-Max-Age": "600",
}
STYLE = {
    "color_background": "#edeae3",
    "color_error": "#9e2d2d",
    "color_highlight": "#69b5ce",
    "color_modal_backdrop": "",
    "color_success": "#498e49",
    "color_text": "#303030",
    "dim_border_radius": "6px",
    "dim_font_size": "13px",
    "dim_spacing_size": "20px",
    "font_family_body": "Georgia, Times, 'Times New Roman', serif",
    "font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif",
}


class _NoAuthServer(Exception):
    pass


def _srv(request: Request) -> AuthServer:
    srv: AuthServer | None = getattr(request.app.state, "auth_server", None)
    if srv is None:
        raise _NoAuthServer
    return srv


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers=headers, media_type="application/json")


def _oauth_error(exc: OAuthError, cors: bool = False) -> Response:
    return _json(exc.body(), exc.status, {**NO_STORE, **exc.headers, **(CORS if cors else {})})


def _not_found() -> Response:
    return _json({"error": "not_found", "error_description": "authorization is off"}, 404)


async def _form(request: Request) -> list[tuple[str, str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    form = await request.form()
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


def _html(page: authorize.Page, request: Request) -> Response:
    resp = HTMLResponse(page.html, page.status, headers=pages.SECURITY_HEADERS)
    if page.cookie is not None:
        resp.set_cookie(
            authorize.COOKIE,
            page.cookie,
            max_age=authorize.TXN_LIFETIME,
            path="/auth",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return resp


# discovery ------------------------------------------------------------------------------------------


@router.options("/fhir/.well-known/smart-configuration")
@router.options("/.well-known/openid-configuration")
@router.options("/auth/jwks")
@router.options("/auth/token")
@router.options("/auth/revoke")
@router.options("/auth/introspect")
@router.options("/auth/smart-style.json")
async def preflight() -> Response:
    return Response(status_code=204, headers=CORS)


@router.get("/fhir/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    try:
        srv = _srv(request)
    except _NoAuthServer:
        return _not_found()
    doc = discovery.smart_configuration(srv.urls, bool(srv.settings.registration_token))
    return _json(doc, headers=CORS)


@router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> Response:
    try:
        srv = _srv(request)
    except _NoAuthServer:
        return _not_found()
    doc = discovery.openid_configuration(srv.urls, bool(srv.settings.registration_token))
    return _json(doc, headers=CORS)


@router.get("/auth/jwks")
async def jwks(request: Request) -> Response:
    try:
        srv = _srv(request)
    except _NoAuthServer:
        return _not_found()
    await srv.keys.refresh()  # a rotation by another host or the CLI (throttled)
    return _json(srv.keys.jwks(), headers={**CORS, "Cache-Control": "max-age=300"})


@router.get("/auth/smart-style.json")
async def smart_style() -> Response:
    return _json(STYLE, headers=CORS)


# authorize ------------------------------------------------------------------------------------------


def _patient_directory(request: Request) -> tuple[Any, Any]:
    services: Services = request.app.state.services

    async def exists(pid: str) -> bool:
        found = await services.storage.read("Patient", pid)
        return found is not None and not found.deleted

    async def listing() -> list[tuple[str, str]]:
        page = await services.storage.search(SearchQuery(resource_types=("Patient",), count=100))
        out: list[tuple[str, str]] = []
        for r in page.matches:
            doc = orjson.loads(r.body) if r.body else {}
            name = (doc.get("name") or [{}])[0]
            label = " ".join([*name.get("given", []), name.get("family", "")]).strip()
            out.append((r.id, f"{label} ({r.id})" if label else r.id))
        return sorted(out, key=lambda p: p[1])

    return exists, listing


def _encounter_subject(request: Request) -> Callable[[str], Awaitable[str | None]]:
    services: Services = request.app.state.services

    async def subject(eid: str) -> str | None:
        """The Encounter's subject reference ("" when it has none), None when it is unknown."""
        found = await services.storage.read("Encounter", eid)
        if found is None or found.deleted or not found.body:
            return None
        doc = orjson.loads(found.body)
        ref = (doc.get("subject") or {}).get("reference") if isinstance(doc, dict) else None
        return ref if isinstance(ref, str) else ""

    return subject


async def _authorize(request: Request, form: list[tuple[str, str]]) -> Response:
    srv = _srv(request)
    cookie = request.cookies.get(authorize.COOKIE)
    result: authorize.Page | authorize.Redirect
    if any(k == "txn" for k, _ in form):
        exists, listing = _patient_directory(request)
        address = request.client.host if request.client else "unknown"
        result = await authorize.step(srv, form, cookie, address, exists, listing)
    else:
        result = await authorize.start(srv, form, cookie)
    if isinstance(result, authorize.Redirect):
        return RedirectResponse(result.location, 302, headers=NO_STORE)
    return _html(result, request)


@router.get("/auth/authorize")
async def authorize_get(request: Request) -> Response:
    try:
        return await _authorize(request, list(request.query_params.multi_items()))
    except _NoAuthServer:
        return _not_found()


@router.post("/auth/authorize")
async def authorize_post(request: Request) -> Response:
    try:
        form = await _form(request)
        return await _authorize(request, form)
    except _NoAuthServer:
        return _not_found()
    except OAuthError as exc:
        return HTMLResponse(pages.error_page(exc.description), 400, headers=pages.SECURITY_HEADERS)


# token, introspection, revocation, registration, launch ---------------------------------------------


FormEndpoint = Callable[[AuthServer, list[tuple[str, str]], str | None], Awaitable[Any]]


async def _form_endpoint(request: Request, endpoint: FormEndpoint) -> Response:
    """A form-posted OAuth endpoint: its JSON answer (or an empty 200), never cached, CORS open."""
    try:
        srv = _srv(request)
        doc = await endpoint(srv, await _form(request), request.headers.get("authorization"))
    except _NoAuthServer:
        return _not_found()
    except OAuthError as exc:
        return _oauth_error(exc, cors=True)
    if doc is None:
        return Response(status_code=200, headers={**NO_STORE, **CORS})
    return _json(doc, headers={**NO_STORE, **CORS})


@router.post("/auth/token")
async def token(request: Request) -> Response:
    return await _form_endpoint(request, token_endpoint.handle)


@router.post("/auth/introspect")
async def introspect(request: Request) -> Response:
    return await _form_endpoint(request, endpoints.introspect)


@router.post("/auth/revoke")
async def revoke(request: Request) -> Response:
    return await _form_endpoint(request, endpoints.revoke)


@router.post("/auth/register")
async def register(request: Request) -> Response:
    try:
        srv = _srv(request)
        if not srv.settings.registration_token:
            raise _NoAuthServer
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        doc = await endpoints.register(srv, body, request.headers.get("authorization"))
    except _NoAuthServer:
        return _json({"error": "not_found", "error_description": "registration is off"}, 404)
    except OAuthError as exc:
        return _oauth_error(exc)
    return _json(doc, 201, NO_STORE)


@router.post("/auth/launch")
async def launch(request: Request) -> Response:
    try:
        srv = _srv(request)
        ctype = request.headers.get("content-type", "")
        params: dict[str, Any]
        if ctype.startswith("application/json"):
            try:
                loaded = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                raise OAuthError("invalid_request", "the body is not JSON") from None
            if not isinstance(loaded, dict):
                raise OAuthError("invalid_request", "the body must be a JSON object")
            params = loaded
        else:
            params = dict(await _form(request))
        exists, _ = _patient_directory(request)
        doc = await endpoints.create_launch(
            srv,
            params,
            request.headers.get("authorization"),
            exists,
            encounter_subject=_encounter_subject(request),
        )
    except _NoAuthServer:
        return _not_found()
    except OAuthError as exc:
        return _oauth_error(exc)
    return _json(doc, 201, NO_STORE)


# logging --------------------------------------------------------------------------------------------


# Query parameters whose values never reach a log line, whatever the path.
SENSITIVE_PARAMS = frozenset(
    {
        "access_token",
        "id_token",
        "refresh_token",
        "token",
        "code",
        "code_verifier",
        "client_secret",
        "client_assertion",
        "assertion",
        "password",
        "launch",
        "state",
        "_csrf",
        "csrf_token",
        "api_key",
        "apikey",
    }
)


def redact_path(path: str) -> str:
    """A request path for the access log: /auth URLs lose their query; elsewhere the values of
    sensitive parameters (access_token, code, client_secret, ...) become `REDACTED`."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    if base.startswith("/auth/"):
        return base + "?…"
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in SENSITIVE_PARAMS:
            part = f"{name}=REDACTED"
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"


class _AuthQueryFilter(logging.Filter):
    """uvicorn's access log prints the path with its query: drop the query of /auth URLs and
    redact sensitive parameters (a token sent as ?access_token=) of every other URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if "?" in path:
                record.args = (*args[:2], redact_path(path), *args[3:])
        return True


def install_log_filter() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _AuthQueryFilter) for f in access.filters):
        access.addFilter(_AuthQueryFilter())
