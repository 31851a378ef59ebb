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

from fhir_server import __version__
from fhir_server.api import fhir_routes
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
    return Services(
        settings=settings,
        storage=create_storage(settings),
        registry=registry,
        pages=PageSigner.from_data_dir(settings.data_dir),
        tz=tz,
        resource_types=frozenset(resource_types()),
        validation=ValidationPool(settings.validation_processes),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        await services.storage.open()
        await add_stored_parameters(services.registry, services.storage)
        services.validation.start()
        app.state.services = services
        if settings.seed:
            from fhir_server.seed import seed_if_empty

            await seed_if_empty(services)
        try:
            yield
        finally:
            services.validation.shutdown()
            await services.storage.close()

    app = FastAPI(
        title="FHIR R4 server for telehealth and RPM",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(fhir_routes.router)

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
