"""`create_app(settings)`: everything is built in the lifespan and reached through app.state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_server import __version__, conformance, gc_tuning
from fhir_server.api import auth_routes, fhir_routes
from fhir_server.auth.server.core import AuthServer
from fhir_server.custom_params import (
    DEFAULT_PROFILES_DIR,
    add_profile_parameters,
    add_stored_parameters,
)
from fhir_server.errors import FhirError, MethodNotAllowed, NotFound
from fhir_server.fhir.resource_types import resource_types
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.interactions.context import Services
from fhir_server.interactions.validation_pool import ValidationPool
from fhir_server.search.paging import PageSigner
from fhir_server.settings import Settings
from fhir_server.storage.factory import create_storage

log = logging.getLogger("fhir_server")


def build_services(settings: Settings) -> Services:
    tz = ZoneInfo(settings.timezone)
    registry = SearchParamRegistry.load_default(tz)
    add_profile_parameters(registry, settings.profiles_dir or DEFAULT_PROFILES_DIR)
    services = Services(
        settings=settings,
        storage=create_storage(settings),
        registry=registry,
        pages=PageSigner.from_data_dir(settings.data_dir),
        tz=tz,
        resource_types=frozenset(resource_types()),
        validation=ValidationPool(settings.validation_processes),
    )
    from fhir_server.subscriptions.matching import SubscriptionIndex

    services.write_hooks = SubscriptionIndex(services)  # subscriptions: match + outbox per write
    conformance.install_profiles(services)  # profiles/ + core and US Core profiles
    return services


async def _start_auth(settings: Settings, services: Services) -> AuthServer | None:
    """The SMART authorization server and the resource server's token check (auth on only)."""
    if settings.auth != "on":
        log.warning("Authorization is OFF (--auth off): every client has full access")
        return None
    from fhir_server.auth.server import open_auth_server
    from fhir_server.auth.server.resource import make_authenticator

    auth_server = await open_auth_server(settings)  # on MongoDB: in the database, shared
    await auth_server.store.purge()  # expired codes, launches, replay entries, old grants
    services.authenticate = make_authenticator(auth_server)
    return auth_server


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        await services.storage.open()
        if settings.storage_url().startswith(("mongodb://", "mongodb+srv://")):
            # several hosts share the database: page links must verify on each of them
            services.pages = await PageSigner.from_storage(services.storage)
        await add_stored_parameters(services.registry, services.storage)
        await conformance.add_stored_conformance(services)
        services.storage = conformance.served_storage(services)  # + profiles/, read-only
        services.validation.start()
        app.state.services = services
        auth_server = await _start_auth(settings, services)
        app.state.auth_server = auth_server
        if settings.seed:
            from fhir_server.seed import seed_if_empty

            await seed_if_empty(services)
        from fhir_server.subscriptions.worker import start_worker

        subscription_worker = start_worker(services)
        from fhir_server.export.runner import ExportRunner

        export_runner = ExportRunner(services)
        app.state.export_runner = export_runner
        await export_runner.start()
        gc_tuning.freeze_startup_heap()
        try:
            yield
        finally:
            await export_runner.stop()
            await subscription_worker.stop()
            services.validation.shutdown()
            await services.storage.close()
            if auth_server is not None:
                await auth_server.store.close()

    app = FastAPI(
        title="FHIR R4 server for telehealth and RPM",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(auth_routes.router)  # before /fhir/{path}: /fhir/.well-known/...
    from fhir_server.api import export_routes

    app.include_router(export_routes.router)  # before /fhir/{path}: $export-status, -file
    app.include_router(fhir_routes.router)
    auth_routes.install_log_filter()
    from fhir_server.api.catch_all import CatchAllMiddleware

    app.add_middleware(CatchAllMiddleware)  # a 500 OperationOutcome, never an escaped exception
    from fhir_server.api.cors import FhirCorsMiddleware

    app.add_middleware(FhirCorsMiddleware)  # CORS on /fhir: any origin, preflights without token

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        ok = await services.storage.ready()
        return JSONResponse({"status": "ready" if ok else "unavailable"}, 200 if ok else 503)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> Response:
        from fhir_server.openapi import openapi_bytes

        return Response(openapi_bytes(), media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="FHIR server API")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err: FhirError
        if exc.status_code == 405:
            err = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        elif exc.status_code == 404:
            err = NotFound(f"No such path {request.url.path}; the FHIR base is /fhir")
        else:
            err = FhirError(str(exc.detail), status=exc.status_code)
        return fhir_routes.error_response(err)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("Unhandled error on %s %s", request.method, request.url.path)
        err = FhirError("Internal server error", status=500, code="exception")
        return fhir_routes.error_response(err)

    return app
