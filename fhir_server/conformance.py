"""The server's own conformance resources (profiles/): the one place they are loaded and served.

At start, every JSON file in profiles/ (StructureDefinition, ValueSet, CodeSystem, SearchParameter,
OperationDefinition) is

- added to the profile registry (`install_profiles`: StructureDefinitions, ValueSets, CodeSystems,
  what the validator uses, beside the core R4 and US Core 3.1.0 profiles); SearchParameters go to
  the search registry (`custom_params`);
- served read-only through `ConformanceOverlay` (`served_storage`): the storage the HTTP server's
  interactions see (CLI commands such as reindex work on the data store alone), answering reads,
  vreads, instance history and searches of these resources from a small store of their own (an
  SQLite file in a temporary folder, rebuilt at each start), so reads and searches work exactly as
  for stored resources while the data store holds only data (counts, history, exports and the
  seed's "empty store" test are unchanged). A type search of a conformance type returns these
  resources first, then the stored ones;
- protected: `Services.read_only` lists their (type, id), and every write to one of them is refused
  with 405 (`check_writable`, called on every write: `interactions/common.prepare_write`, and
  before delete and patch look for the resource in the data store).

StructureDefinitions, ValueSets and CodeSystems stored by clients are added to the profile
registry at start (`add_stored_conformance`), like stored SearchParameters; `$validate` also finds
a stored StructureDefinition named by its `profile` parameter at once.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from fhir_server.custom_params import DEFAULT_PROFILES_DIR, profile_resources
from fhir_server.errors import Conflict, MethodNotAllowed
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import now_us, to_instant_text
from fhir_server.fhir.fulltext import fulltext_values
from fhir_server.fhir.profiles import ProfileRegistry
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.interactions.context import Services
from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import (
    HistoryPage,
    HistoryQuery,
    SearchPage,
    Storage,
    StoredResource,
    Write,
)

CONFORMANCE_TYPES = frozenset(
    {"StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "OperationDefinition"}
)
PROFILED_TYPES = frozenset({"StructureDefinition", "ValueSet", "CodeSystem"})

__all__ = [
    "CONFORMANCE_TYPES",
    "ConformanceOverlay",
    "add_stored_conformance",
    "build_profiles",
    "check_writable",
    "install_profiles",
    "served_storage",
    "server_resources",
    "supported_profiles",
]


def server_resources(folder: Path | None) -> list[dict[str, Any]]:
    """The conformance resources of profiles/ (those with a type, an id and a url)."""
    out = []
    for res in profile_resources(folder or DEFAULT_PROFILES_DIR):
        if res.get("resourceType") in CONFORMANCE_TYPES and res.get("id") and res.get("url"):
            out.append(res)
    return out


def build_profiles(resources: list[dict[str, Any]]) -> ProfileRegistry:
    """Core R4 and US Core profiles plus the server's own (profiles/)."""
    registry = ProfileRegistry.with_core()
    for res in resources:
        registry.add(res)
    return registry


def read_only_ids(resources: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(str(r["resourceType"]), str(r["id"])): str(r["url"]) for r in resources}


def check_canonical(
    read_only: dict[tuple[str, str], str], rtype: str, id: str, resource: dict[str, Any]
) -> None:
    """A stored conformance resource may not take the canonical URL of one of the server's own:
    `StructureDefinition?url=...` would then name two, and validation would silently use one."""
    url = resource.get("url")
    if not isinstance(url, str) or (rtype, id) in read_only:
        return
    if any(u == url and t == rtype for (t, _), u in read_only.items()):
        raise Conflict(
            f"{url} is the canonical URL of one of the server's own conformance resources "
            "(profiles/); give this resource its own url",
            expression=[f"{rtype}.url"],
        )


def check_writable(read_only: dict[tuple[str, str], str], rtype: str, id: str) -> None:
    url = read_only.get((rtype, id))
    if url is not None:
        raise MethodNotAllowed(
            f"{rtype}/{id} ({url}) is one of the server's own conformance resources (profiles/) "
            "and is read-only",
            expression=[rtype],
        )


def install_profiles(services: Services) -> None:
    """The profiles writes and $validate check: core R4, US Core 3.1.0 and profiles/."""
    own = server_resources(services.settings.profiles_dir)
    services.profiles = build_profiles(own)
    services.read_only = read_only_ids(own)


def supported_profiles(services: Services) -> dict[str, tuple[str, ...]]:
    """Resource type -> the canonical urls of the server's own profiles (profiles/) that constrain
    it, for `CapabilityStatement.rest.resource.supportedProfile`."""
    out: dict[str, list[str]] = {}
    for (rtype, _), url in sorted(services.read_only.items()):
        sd = services.profiles.structure(url) if rtype == "StructureDefinition" else None
        if sd is not None and sd.get("kind") == "resource" and sd.get("derivation") == "constraint":
            out.setdefault(str(sd.get("type")), []).append(url)
    return {t: tuple(sorted(urls)) for t, urls in out.items()}


def served_storage(services: Services) -> Storage:
    """The storage the HTTP server uses: the (open) data store with profiles/ served beside it;
    closing it closes both."""
    own = server_resources(services.settings.profiles_dir)
    return ConformanceOverlay(services.storage, own, services.registry).as_storage()


async def add_stored_conformance(services: Services) -> int:
    """Add the StructureDefinitions, ValueSets and CodeSystems stored in the server."""
    registry, storage = services.profiles, services.storage
    own = set(services.read_only.values())
    count = 0
    for rtype in sorted(PROFILED_TYPES):
        after: tuple[object, ...] | None = None
        while True:
            page = await storage.search(SearchQuery((rtype,), (), count=500, after=after))
            for m in page.matches:
                res = jsonio.loads_own(m.body)
                if isinstance(res, dict) and res.get("url") not in own and registry.add(res):
                    count += 1
            if page.next_cursor is None:
                break
            after = page.next_cursor
    return count


class ConformanceOverlay:
    """The data store, with the server's conformance resources served beside it (read-only)."""

    def __init__(
        self, inner: Storage, resources: list[dict[str, Any]], registry: SearchParamRegistry
    ) -> None:
        self.inner = inner
        self._resources = resources
        self._registry = registry
        self._ids = set(read_only_ids(resources))
        self._folder: Path | None = None
        self._own: Storage | None = None
        self._lock = asyncio.Lock()

    def as_storage(self) -> Storage:
        return cast(Storage, self)

    def __getattr__(self, name: str) -> Any:  # everything not overridden goes to the data store
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def open(self) -> None:
        await self.inner.open()  # served_storage wraps a store already open; for completeness

    async def _store(self) -> Storage | None:
        """The store of the conformance resources, made on first use (most requests never need
        it, and opening it costs a fraction of a second)."""
        if self._own is None and self._resources:
            async with self._lock:
                if self._own is None:
                    from fhir_server.storage.sqlite import SqliteStorage

                    self._folder = Path(tempfile.mkdtemp(prefix="fhir-conformance-"))
                    own = SqliteStorage(
                        self._folder / "conformance.db", synchronous="OFF", readers=1
                    )
                    await own.open()
                    loaded = now_us()  # their lastUpdated: when this server loaded them
                    async with own.transaction() as tx:
                        for res in self._resources:
                            await tx.write(self._write(res, loaded))
                    self._own = own
        return self._own

    def _write(self, res: dict[str, Any], now: int) -> Write:
        rtype = str(res["resourceType"])
        meta = {**(res.get("meta") or {}), "versionId": "1", "lastUpdated": to_instant_text(now)}
        out = {"resourceType": rtype, "id": res["id"], "meta": meta}
        out.update({k: v for k, v in res.items() if k not in out})
        index = [*self._registry.extractor(rtype)(out), *fulltext_values(out)]
        stored = StoredResource(rtype, str(res["id"]), 1, now, False, jsonio.dumps(out))
        return Write(stored, index, 0, "PUT")

    async def close(self) -> None:
        try:
            if self._own is not None:
                await self._own.close()
        finally:
            self._own = None
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None
            await self.inner.close()

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        own = await self._store() if (resource_type, id) in self._ids else None
        if own is not None:
            return await own.read(resource_type, id)
        return await self.inner.read(resource_type, id)

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        own = await self._store() if (resource_type, id) in self._ids else None
        if own is not None:
            return await own.vread(resource_type, id, version)
        return await self.inner.vread(resource_type, id, version)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        key = (query.resource_type or "", query.id or "")
        own = await self._store() if key in self._ids else None
        if own is not None:
            return await own.history(query)
        return await self.inner.history(query)

    async def search(self, query: SearchQuery) -> SearchPage:
        types = set(query.resource_types)
        own = await self._store() if types and types <= CONFORMANCE_TYPES else None
        if own is None:
            return await self.inner.search(query)
        page = await self.inner.search(query)
        mine = await own.search(replace(query, count=1000, after=None, before=None, snapshot=None))
        total = None if page.total is None else page.total + len(mine.matches)
        if query.after is not None or query.before is not None or query.count == 0:
            return replace(page, total=total)
        return replace(
            page,
            matches=[*mine.matches, *page.matches],
            included=[*mine.included, *page.included],
            total=total,
        )
