"""An in-process server for the search tests: one app and SQLite store per test module.

Starting an app per hypothesis example would dominate the run time, so `server` is module-scoped
(with a module-scoped event loop) and `Server.replace_all` deletes what the previous example
loaded before loading the next one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.settings import Settings

BASE = "http://testserver/fhir"


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class Server:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.loaded: list[str] = []  # Type/id of what the last call of replace_all put in

    async def replace_all(self, resources: list[dict[str, Any]]) -> None:
        """Delete what was loaded last, then load `resources` (with ids) in one transaction."""
        if self.loaded:
            entries = [{"request": {"method": "DELETE", "url": ref}} for ref in self.loaded]
            r = await self.client.post("", json=transaction(entries))
            assert r.status_code == 200, r.text
        self.loaded = [f"{res['resourceType']}/{res['id']}" for res in resources]
        if resources:
            entries = [
                {"resource": res, "request": {"method": "PUT", "url": ref}}
                for res, ref in zip(resources, self.loaded, strict=True)
            ]
            r = await self.client.post("", json=transaction(entries))
            assert r.status_code == 200, r.text

    async def search(self, rtype: str, params: list[tuple[str, str]], count: int) -> list[str]:
        """Every matching id over all pages, in order (duplicates kept, so they can be seen)."""
        r = await self.client.get(rtype, params=[*params, ("_count", str(count))])
        ids: list[str] = []
        while True:
            assert r.status_code == 200, f"{rtype}?{params}: {r.status_code} {r.text}"
            body = r.json()
            ids += [e["resource"]["id"] for e in body.get("entry", ())]
            nxt = [ln["url"] for ln in body.get("link", ()) if ln["relation"] == "next"]
            if not nxt:
                return ids
            r = await self.client.get(nxt[0])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, module_storage_url: str
) -> AsyncIterator[Server]:
    data_dir = tmp_path_factory.mktemp("search") / "data"
    # Dates without a zone are read in the server's zone: UTC, as the reference evaluator does.
    # `module_storage_url`: SQLite, or every engine in modules marked `all_engines`.
    app = create_app(Settings(data_dir=data_dir, seed=False, timezone="UTC", auth="off",
                              storage=module_storage_url))  # fmt: skip
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield Server(client)
