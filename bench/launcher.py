"""The server process the harness starts: the real app, plus a bare "ceiling" endpoint.

`python -m bench.launcher --port P --data-dir D [--workers N]` runs uvicorn over
`create_app(Settings())` (settings from FHIR_SERVER_* variables, as `fhir-server serve` does) with
two extra routes that exist only here, never in the fhir_server package:

- `POST /_bench/warm` with a JSON list of "Type/id": reads those resources from the store once and
  keeps their bytes and version headers in a dict (per worker process).
- `GET /_bench/ceiling/{type}/{id}`: answers from that dict with the same bytes and the same
  headers as `GET /fhir/{type}/{id}`. It is the cheapest possible read through the same uvicorn,
  FastAPI and middleware stack, so `/fhir` reads divided by ceiling reads is the share of the
  ceiling the FHIR layer keeps.

Authorization is off in benchmark servers (`FHIR_SERVER_AUTH=off`, set in `main`): the load
generators send no access tokens, and the numbers measure the FHIR layer. The server logs its
"Authorization is OFF" warning at start, as it always does in that mode.
"""

from __future__ import annotations

import argparse
import os
import sys

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from fhir_server.fhir import jsonio
from fhir_server.interactions.common import version_headers

ENV = "FHIR_SERVER_"
FHIR_JSON = "application/fhir+json; charset=utf-8"
_Entry = tuple[bytes, dict[str, str]]


def add_ceiling_routes(app: FastAPI) -> None:
    cache: dict[tuple[str, str], _Entry] = {}

    async def fetch(request: Request, rtype: str, id: str) -> _Entry | None:
        stored = await request.app.state.services.storage.read(rtype, id)
        if stored is None or stored.deleted:
            return None
        headers = version_headers(stored)
        headers["Content-Type"] = FHIR_JSON
        entry = (stored.body, headers)
        cache[(rtype, id)] = entry
        return entry

    @app.post("/_bench/warm", include_in_schema=False)
    async def warm(request: Request) -> JSONResponse:
        refs = jsonio.loads(await request.body(), max_depth=3)
        found = 0
        for ref in refs:
            rtype, _, id = str(ref).partition("/")
            if await fetch(request, rtype, id) is not None:
                found += 1
        return JSONResponse({"pid": os.getpid(), "found": found, "cached": len(cache)})

    @app.get("/_bench/ceiling/{rtype}/{id}", include_in_schema=False)
    async def ceiling(request: Request, rtype: str, id: str) -> Response:
        entry = cache.get((rtype, id))
        if entry is None:  # not warmed in this worker: fetch once, like the warm-up would
            entry = await fetch(request, rtype, id)
            if entry is None:
                return Response(status_code=404)
        body, headers = entry
        return Response(content=body, status_code=200, headers=headers)


def app_factory() -> FastAPI:
    from fhir_server.app import create_app
    from fhir_server.settings import Settings

    app = create_app(Settings())
    add_ceiling_routes(app)
    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m bench.launcher")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--access-log", action="store_true", help="uvicorn access log (off: bench)")
    args = p.parse_args(argv)
    os.environ[ENV + "HOST"] = "127.0.0.1"
    os.environ[ENV + "PORT"] = str(args.port)
    os.environ[ENV + "DATA_DIR"] = args.data_dir
    os.environ[ENV + "WORKERS"] = str(args.workers)
    os.environ[ENV + "SEED"] = "false"
    # Benchmarks measure the FHIR layer without SMART token checks (see the module docstring).
    os.environ[ENV + "AUTH"] = "off"
    uvicorn.run(
        "bench.launcher:app_factory",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=args.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
