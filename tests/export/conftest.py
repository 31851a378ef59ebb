"""Export tests: the real app over HTTP (httpx + ASGI) on a SQLite store in a temp dir, with a
runner that polls often so jobs finish in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.fhir import jsonio
from fhir_server.settings import Settings
from tests.api.conftest import BASE, make_settings

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def export_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "export_poll_seconds": 0.02,
        "export_settle_seconds": 0.0,
        "export_page_size": 50,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield app, c


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return export_settings(tmp_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings) as (_, c):
        yield c


async def post_batch(client: httpx.AsyncClient, resources: list[dict[str, Any]]) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    r = await client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert all(s.startswith("20") for s in statuses), r.text


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": f"Fam-{pid}"}]}


def observation(oid: str, pid: str, code: str = "8867-4", value: float = 70.0) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2024-05-01T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


async def kickoff(client: httpx.AsyncClient, path: str = "$export", **kw: Any) -> str:
    headers = {**ASYNC, **kw.pop("headers", {})}
    r = await client.request(kw.pop("method", "GET"), path, headers=headers, **kw)
    assert r.status_code == 202, r.text
    return r.headers["Content-Location"]


async def wait_done(
    client: httpx.AsyncClient, status_url: str, timeout: float = 20
) -> httpx.Response:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        r = await client.get(status_url)
        if r.status_code != 202:
            return r
        assert "X-Progress" in r.headers and "Retry-After" in r.headers
        await asyncio.sleep(0.02)
    raise AssertionError("export did not finish")


async def download(
    client: httpx.AsyncClient, manifest: dict[str, Any], key: str = "output"
) -> dict[str, list[dict[str, Any]]]:
    """type -> resources from every file of the manifest's `key` list."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest[key]:
        r = await client.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [jsonio.loads(ln) for ln in r.content.splitlines() if ln.strip()]
        assert len(lines) == item["count"]
        out.setdefault(item["type"], []).extend(lines)
    return out


async def export_all(
    client: httpx.AsyncClient, path: str = "$export", **kw: Any
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    url = await kickoff(client, path, **kw)
    r = await wait_done(client, url)
    assert r.status_code == 200, r.text
    manifest = r.json()
    return manifest, await download(client, manifest)


Ids = Callable[[list[dict[str, Any]]], set[str]]


def ids(resources: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in resources}
