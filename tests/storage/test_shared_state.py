"""State several server processes (and, on MongoDB, several hosts) must share through the
storage: the page-link signing key and the one-time seeding. On every storage engine
(tests/storage/engines.py); "another host" is another app or Services object with a data
directory of its own on the same database."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import build_services, create_app
from fhir_server.interactions.context import Services
from fhir_server.search.paging import SECRET_RECORD, PageSigner
from fhir_server.seed import SEED_LEASE, seed_if_empty
from fhir_server.storage.base import Storage
from fhir_server.storage.factory import create_storage
from tests.api.conftest import BASE, make_settings
from tests.storage.conftest import settings_for

pytestmark = pytest.mark.all_engines


@contextlib.asynccontextmanager
async def server(data_dir: Path, storage_url: str | None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(data_dir, storage=storage_url))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield c


async def test_page_links_work_on_every_host(tmp_path: Path, storage_url: str | None) -> None:
    # SQLite is one host: its workers share the data directory. MongoDB: hosts share nothing else.
    other_dir = tmp_path if storage_url is None else tmp_path / "host-b"
    async with server(tmp_path, storage_url) as a, server(other_dir, storage_url) as b:
        for i in range(3):
            r = await a.put(f"Patient/p{i}", json={"resourceType": "Patient", "id": f"p{i}"})
            assert r.status_code in (200, 201)
        page = (await a.get("Patient", params={"_count": "1"})).json()
        nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
        r = await b.get(nxt)
        assert r.status_code == 200, r.text
        assert r.json()["entry"][0]["resource"]["id"] != page["entry"][0]["resource"]["id"]
        tampered = nxt[:-2] + ("AA" if not nxt.endswith("AA") else "BB")
        assert (await b.get(tampered)).status_code == 400


async def test_page_key_is_created_once(
    store: Storage, tmp_path: Path, storage_url: str | None
) -> None:
    other = create_storage(settings_for(tmp_path, storage_url))  # the same store, reopened
    await other.open()
    try:
        signers = await asyncio.gather(
            *[PageSigner.from_storage(s) for s in (store, other, store, other)]
        )
        tokens = {s.sign({"q": "Patient"}) for s in signers}
        assert len(tokens) == 1
        record = await other.get_record(*SECRET_RECORD)
        assert record is not None
        assert (await PageSigner.from_storage(store)).sign({"q": "Patient"}) in tokens
    finally:
        await other.close()


def _seed_folder(tmp_path: Path) -> Path:
    """Resources without ids are POSTed: seeding twice would store them twice."""
    folder = tmp_path / "seed"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({"resourceType": "Patient", "gender": "female"}))
    (folder / "b.json").write_text(json.dumps({"resourceType": "Practitioner", "active": True}))
    return folder


@contextlib.asynccontextmanager
async def services_on(
    data_dir: Path, storage_url: str | None, seed: Path
) -> AsyncIterator[Services]:
    # SQLite: the store file lives in the data directory; MongoDB: the URL names the store
    services = build_services(make_settings(data_dir, storage=storage_url, seed_dir=seed))
    await services.storage.open()
    try:
        yield services
    finally:
        await services.storage.close()


async def test_concurrent_seeders_seed_once(tmp_path: Path, storage_url: str | None) -> None:
    seed = _seed_folder(tmp_path)
    b_dir = tmp_path if storage_url is None else tmp_path / "host-b"
    async with (
        services_on(tmp_path, storage_url, seed) as a,
        services_on(b_dir, storage_url, seed) as b,
    ):
        results = await asyncio.gather(
            seed_if_empty(a, owner="a"), seed_if_empty(b, owner="b"), seed_if_empty(a, owner="c")
        )
        assert sum(r is not None for r in results) == 1
        assert await b.storage.count() == 2
        assert await seed_if_empty(b, owner="d") is None
        assert await a.storage.count() == 2
        assert await a.storage.acquire_lease(SEED_LEASE, "e", 30)  # released after seeding


async def test_a_seed_in_progress_elsewhere_is_not_repeated(
    tmp_path: Path, storage_url: str | None
) -> None:
    seed = _seed_folder(tmp_path)
    async with services_on(tmp_path, storage_url, seed) as a:
        assert await a.storage.acquire_lease(SEED_LEASE, "other-host", 60)
        assert await seed_if_empty(a) is None
        assert await a.storage.count() == 0
        await a.storage.release_lease(SEED_LEASE, "other-host")
        summary = await seed_if_empty(a)
        assert summary is not None and await a.storage.count() == 2


async def test_servers_starting_together_seed_once(tmp_path: Path, storage_url: str | None) -> None:
    """Two servers (workers on one host; on MongoDB, two hosts) start at once with seeding on."""
    seed = _seed_folder(tmp_path)
    dirs = [tmp_path, tmp_path if storage_url is None else tmp_path / "host-b"]
    apps = [
        create_app(make_settings(d, storage=storage_url, seed=True, seed_dir=seed)) for d in dirs
    ]
    managers = [LifespanManager(app, startup_timeout=120, shutdown_timeout=60) for app in apps]
    try:
        await asyncio.gather(*(m.__aenter__() for m in managers))
        storage = apps[1].state.services.storage
        assert await storage.count("Patient") == 1
        assert await storage.count("Practitioner") == 1
    finally:
        for m in managers:
            await m.__aexit__(None, None, None)
