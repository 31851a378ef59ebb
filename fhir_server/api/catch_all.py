"""The last line of defence: an unexpected exception becomes a 500 OperationOutcome.

Starlette's `ServerErrorMiddleware` (where an `exception_handler(Exception)` lands) sends the
handler's response and then re-raises the exception out of the app, so the server logs it as an
ASGI failure and may drop the keep-alive connection. This middleware answers and does not re-raise.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.errors import FhirError

log = logging.getLogger("fhir_server")


class CatchAllMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("Unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if finished:
                return
            if started:  # too late for a status; end the body so the connection stays usable
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            from fhir_server.api.fhir_routes import error_response

            err = FhirError("Internal server error", status=500, code="exception")
            await error_response(err)(scope, receive, send)
