"""A real server on a loopback port (uvicorn in a thread) for clients that speak real HTTP:
PyPI fhirclient (requests) and headless Chromium."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.auth.server.clients import new_client
from fhir_server.auth.server.keys import keys_path
from fhir_server.auth.server.models import User
from fhir_server.auth.server.passwords import hash_password
from fhir_server.seed import direct_sender
from tests.api.conftest import make_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def prepare(
    tmp_path: Path,
    keys_file: Path,
    origin: str,
    clients: list[dict[str, Any]],
    users: list[tuple[str, str, str]],
) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    shutil.copy(keys_file, keys_path(tmp_path / "data"))
    app = create_app(make_settings(tmp_path, auth="on", public_url=origin))
    async with LifespanManager(app):
        send = direct_sender(app.state.services)
        for res in (
            {
                "resourceType": "Patient",
                "id": "pat1",
                "name": [{"family": "Doe", "given": ["Jane"]}],
            },
            {
                "resourceType": "Observation",
                "id": "obs1",
                "status": "final",
                "code": {"text": "heart rate"},
                "subject": {"reference": "Patient/pat1"},
            },
        ):
            status, _ = await send("PUT", f"{res['resourceType']}/{res['id']}", res)
            assert status in (200, 201)
        store = app.state.auth_server.store
        for meta in clients:
            client, _ = new_client(meta)
            await store.put_client(client)
        for username, password, fhir_user in users:
            await store.put_user(
                User(username, hash_password(password), fhir_user, int(time.time()))
            )


@contextmanager
def serve(tmp_path: Path, port: int, **overrides: Any) -> Iterator[str]:
    origin = f"http://127.0.0.1:{port}"
    settings = make_settings(
        tmp_path, auth="on", public_url=origin, host="127.0.0.1", port=port, **overrides
    )
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield origin
    finally:
        server.should_exit = True
        thread.join(timeout=15)
