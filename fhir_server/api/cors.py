"""CORS for the FHIR API (`/fhir` and everything under it): browser SMART apps call it from
their own origin with `Authorization: Bearer ...`.

The API authenticates with bearer tokens only, never cookies, so any origin may call it
(`Access-Control-Allow-Origin: *`, no credentials): a page on another origin still needs a token.
Every response under /fhir carries the headers, errors included (401, 403, 404 OperationOutcomes),
so that a browser app can read why a call failed. A preflight (`OPTIONS` with
`Access-Control-Request-Method`) is answered here, before routing and without a token.

SMART App Launch 2.2 "Considerations for CORS": any origin on `.well-known/smart-configuration`
and `metadata`, and at least the registered apps' origins on the FHIR API. The /auth endpoints
that browser apps call (token, introspect, revoke, jwks) set their own headers
(fhir_server/api/auth_routes.py).
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/fhir"
ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALLOW_HEADERS = (
    "Authorization",
    "Accept",
    "Content-Type",
    "Prefer",
    "If-Match",
    "If-None-Exist",
    "If-None-Match",
    "If-Modified-Since",
)
EXPOSE_HEADERS = (
    "Location",
    "ETag",
    "Last-Modified",
    "Content-Location",
    "X-Progress",
    "Retry-After",
    "WWW-Authenticate",
)
MAX_AGE = 600

# On every response under /fhir.
RESPONSE_HEADERS: dict[str, str] = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": ", ".join(EXPOSE_HEADERS),
}
# On the answer to a preflight.
PREFLIGHT_HEADERS: dict[str, str] = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": ", ".join(ALLOW_METHODS),
    "Access-Control-Allow-Headers": ", ".join(ALLOW_HEADERS),
    "Access-Control-Max-Age": str(MAX_AGE),
}


def is_fhir_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def is_preflight(method: str, headers: Headers) -> bool:
    return method == "OPTIONS" and "access-control-request-method" in headers


class FhirCorsMiddleware:
    """ASGI middleware: preflights under /fhir answered here; CORS headers added to every other
    response under /fhir."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_fhir_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if is_preflight(scope["method"], Headers(scope=scope)):
            await Response(status_code=204, headers=PREFLIGHT_HEADERS)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in RESPONSE_HEADERS.items():
                    headers[name] = value  # replaces a value the route set
            await send(message)

        await self.app(scope, receive, send_with_cors)
