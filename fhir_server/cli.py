"""The `fhir-server` command: serve, load, openapi."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from fhir_server.settings import Settings

ENV = "FHIR_SERVER_"


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="data directory (default ./data)")
    p.add_argument("--storage", help="storage URL (default sqlite:///<data-dir>/fhir.db)")


def _apply_env(args: argparse.Namespace, names: list[str]) -> None:
    """CLI options become FHIR_SERVER_* variables, so uvicorn's worker processes see them too."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            os.environ[ENV + name.upper()] = str(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server for RPM")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    _store_options(serve)
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--no-seed", action="store_true", help="do not load seed_data/")
    serve.add_argument("--public-url", help="public base URL, e.g. https://fhir.example.org")
    serve.add_argument("--timezone", help="zone for dates without one (default UTC)")
    serve.add_argument("--auth", choices=["on", "off"], help="SMART authorization (default on)")
    serve.add_argument(
        "--registration-token", help="enable /auth/register for bearers of this token"
    )

    loader = sub.add_parser("load", help="load bundles, NDJSON, resources, folders, .gz")
    loader.add_argument("paths", nargs="+", type=Path)
    loader.add_argument("--url", help="load into a running server at this FHIR base URL")
    loader.add_argument(
        "--token",
        default=os.environ.get("FHIR_SERVER_TOKEN"),
        help="with --url: an access token sent as 'Authorization: Bearer TOKEN' (needed when the "
        "server has auth on, its default; env FHIR_SERVER_TOKEN)",
    )
    _store_options(loader)

    rx = sub.add_parser("reindex", help="re-extract search values (after adding SearchParameters)")
    rx.add_argument("--type", action="append", dest="types", help="only this type (repeatable)")
    _store_options(rx)

    oa = sub.add_parser("openapi", help="write the OpenAPI document of the FHIR API")
    oa.add_argument("--out", type=Path, help="file to write (default: standard output)")

    ex = sub.add_parser("export", help="Bulk Data export of the store into NDJSON files")
    ex.add_argument("--type", action="append", dest="types", help="type(s): repeat or comma-join")
    ex.add_argument("--since", help="only resources changed after this instant")
    ex.add_argument("--until", help="only resources changed before this instant")
    ex.add_argument(
        "--type-filter",
        action="append",
        dest="type_filters",
        help="search per type, e.g. 'Observation?code=http://loinc.org|8867-4'",
    )
    ex.add_argument("--out", type=Path, required=True, help="folder to write (empty or new)")
    _store_options(ex)
    from fhir_server.auth.server.admin import add_commands

    add_commands(sub, _store_options)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    _apply_env(args, ["host", "port", "data_dir", "storage", "workers", "public_url", "timezone"])
    _apply_env(args, ["auth", "registration_token"])
    if args.no_seed:
        os.environ[ENV + "SEED"] = "false"
    settings = Settings()
    if settings.seed:
        asyncio.run(_seed(settings))
    # Seeding happened above, once, before any worker starts.
    os.environ[ENV + "SEED"] = "false"
    base = settings.fhir_base(f"http://{settings.host}:{settings.port}")
    print(f"FHIR base URL: {base}", flush=True)
    print(f"  try: curl {base}/metadata", flush=True)
    if settings.auth == "off":
        print(f"       curl '{base}/Patient?_count=5'", flush=True)
        print(
            f"       curl '{base}/Observation?code=http://loinc.org|85354-9&_sort=-date&_count=3'"
        )
    else:
        print(
            "  every other request needs a SMART access token (see the README); to try the API",
            flush=True,
        )
        print("  with plain curl on this machine, start with authorization off:", flush=True)
        print(
            "       FHIR_SERVER_AUTH=off make run   (or: fhir-server serve --auth off)", flush=True
        )
    print(f"  API docs: http://{settings.host}:{settings.port}/docs", flush=True)
    if settings.seed and settings.auth == "on":
        from fhir_server.auth.server.admin import demo_instructions, ensure_demo

        asyncio.run(ensure_demo(settings.data_dir, settings.storage))
        for line in demo_instructions(base):
            print(line, flush=True)
    uvicorn.run(
        "fhir_server.cli:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
    )
    return 0


async def _seed(settings: Settings) -> None:
    from fhir_server.app import build_services
    from fhir_server.seed import seed_if_empty

    services = build_services(settings)
    await services.storage.open()
    try:
        summary = await seed_if_empty(services)
        if summary is not None:
            print(f"Loaded demo data: {summary.line()}", flush=True)
    finally:
        await services.storage.close()


def app_factory() -> Any:
    from fhir_server.app import create_app

    return create_app(Settings())


async def _load(args: argparse.Namespace) -> int:
    from fhir_server.loader import load

    if args.url:
        import httpx

        from fhir_server.fhir import jsonio

        base = args.url.rstrip("/")
        headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
        if args.token:
            headers["Authorization"] = f"Bearer {args.token}"
        logging.getLogger("httpx").setLevel(logging.WARNING)  # no INFO line per request
        async with httpx.AsyncClient(timeout=300) as client:

            async def send(method: str, path: str, body: Any) -> tuple[int, bytes]:
                r = await client.request(
                    method,
                    f"{base}/{path}" if path else base,
                    content=jsonio.dumps(body),
                    headers=headers,
                )
                return r.status_code, r.content

            summary = await load(args.paths, send, progress=True)
    else:
        from fhir_server.app import build_services
        from fhir_server.seed import direct_sender

        _apply_env(args, ["data_dir", "storage"])
        services = build_services(Settings())
        await services.storage.open()
        try:
            summary = await load(args.paths, direct_sender(services), progress=True)
        finally:
            await services.storage.close()
    print(summary.line())
    for where, why in summary.refused:
        print(f"  refused: {where}: {why}")
    return 0 if not summary.refused else 1


async def _reindex(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fhir_server.app import build_services
    from fhir_server.custom_params import add_stored_parameters
    from fhir_server.reindex import reindex

    _apply_env(args, ["data_dir", "storage"])
    services = build_services(Settings())
    await services.storage.open()
    try:
        added = await add_stored_parameters(services.registry, services.storage)
        unknown = [t for t in args.types or [] if t not in services.resource_types]
        if unknown:
            print(f"unknown resource type(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        total = await services.storage.count()
        with tqdm(total=total, unit=" resources", desc="reindexing") as bar:
            done = await reindex(services, args.types, bar.update)
    finally:
        await services.storage.close()
    print(f"reindexed {done} resources ({added} stored SearchParameters in effect)")
    print("restart running servers so they use the new parameters")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "load":
        return asyncio.run(_load(args))
    if args.command == "reindex":
        return asyncio.run(_reindex(args))
    if args.command == "export":
        from fhir_server.export.local import run_cli

        _apply_env(args, ["data_dir", "storage"])
        return asyncio.run(run_cli(args, Settings()))
    if args.command in ("clients", "users", "keys"):
        from fhir_server.auth.server.admin import run

        _apply_env(args, ["data_dir", "storage"])
        admin_settings = Settings()
        return asyncio.run(run(args, admin_settings.data_dir, admin_settings.storage))
    if args.command == "openapi":
        from fhir_server.openapi import openapi_bytes

        data = openapi_bytes(pretty=True)
        if args.out:
            args.out.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
