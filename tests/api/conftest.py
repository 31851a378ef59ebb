"""API tests drive the real ASGI app over HTTP (httpx) against a real SQLite store per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.settings import Settings

BASE = "http://testserver/fhir"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    # No validation processes by default: spawning them per test would dominate the run time;
    # tests/corpora exercises the pool.
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "seed": False,
        "validation_processes": 0,
        "auth": "off",  # tests/auth checks authorization; the other API tests exercise FHIR
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def client(tmp_path: Path, storage_url: str | None) -> AsyncIterator[httpx.AsyncClient]:
    # `storage_url`: SQLite, unless the module is marked `all_engines` (tests/storage/engines.py)
    app = create_app(make_settings(tmp_path, storage=storage_url))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield c
