"""The storage contract: a few async primitives every engine implements.

Engines store and query; they never interpret FHIR. Versions, timestamps, `meta` and the search
index values are decided above them (in `interactions/` and `fhir/`) and handed down ready to store.
No FastAPI, sqlite3 or PyMongo import belongs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from fhir_server.errors import Conflict
from fhir_server.fhir.index_values import IndexValue
from fhir_server.search.query import SearchQuery

Method = Literal["POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored. `body` is its canonical JSON (with meta); empty if deleted."""

    resource_type: str
    id: str
    version: int
    last_updated: int  # microseconds since the epoch, UTC
    deleted: bool
    body: bytes


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    resource: StoredResource
    method: Method


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    resource_type: str | None = None  # None: system level
    id: str | None = None  # set: instance level
    since: int | None = None  # only versions with last_updated >= since
    at: tuple[int, int] | None = None  # only versions current at some point in [low, high)
    count: int = 50
    before_seq: int | None = None  # keyset cursor: entries older than this position


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[HistoryEntry]
    next_before_seq: int | None  # cursor for the next (older) page, None at the end
    total: int | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    matches: list[StoredResource]
    included: list[StoredResource]
    total: int | None
    next_cursor: tuple[object, ...] | None  # keyset position after the last match, None at the end
    snapshot: int  # engine position that bounds the result set for later pages
    prev_cursor: tuple[object, ...] | None = None  # position of the first match if a page precedes


@dataclass(frozen=True, slots=True)
class Write:
    """A new version to store. `expected_version` is the current version the writer saw (0: none)."""

    resource: StoredResource
    index: Sequence[IndexValue]
    expected_version: int
    method: Method


JsonDoc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """An internal document (a job, a queued notification, ...), not a FHIR resource."""

    kind: str
    key: str
    doc: JsonDoc
    updated: int  # microseconds since the epoch when last put


class VersionConflict(Conflict):
    """Another writer changed the resource since it was read."""


class Searcher(Protocol):
    """Anything that runs a search: the storage itself (committed data) or a transaction."""

    async def search(self, query: SearchQuery) -> SearchPage: ...


class Transaction(Protocol):
    """A unit of work: reads see its own earlier writes; everything commits or nothing does."""

    async def read(self, resource_type: str, id: str) -> StoredResource | None: ...

    async def search(self, query: SearchQuery) -> SearchPage: ...

    async def write(self, write: Write) -> None: ...

    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        """Store an internal record atomically with this transaction's writes (an outbox)."""
        ...


class Storage(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self) -> bool: ...

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version, or a deleted marker (`deleted=True`), or None if never stored."""
        ...

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None: ...

    async def history(self, query: HistoryQuery) -> HistoryPage: ...

    async def search(self, query: SearchQuery) -> SearchPage: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def count(self, resource_type: str | None = None) -> int: ...

    async def reindex(self, items: Sequence[tuple[StoredResource, Sequence[IndexValue]]]) -> int:
        """Replace the index rows of these current versions (skipping any changed since)."""
        ...

    # -- internal records and leases: background work that must happen once across processes ---
    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        """Insert or replace the record (kind, key)."""
        ...

    async def get_record(self, kind: str, key: str) -> Record | None: ...

    async def list_records(
        self, kind: str, after_key: str | None = None, limit: int = 100
    ) -> list[Record]:
        """Records of a kind in key order, after `after_key` (keyset paging)."""
        ...

    async def delete_record(self, kind: str, key: str) -> bool: ...

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take the named lease for `ttl_s` seconds if it is free, expired or already `owner`'s
        (renewal). True if `owner` now holds it. Atomic across processes sharing the store."""
        ...

    async def release_lease(self, name: str, owner: str) -> None: ...


def _engine_attribute(storage: object, name: str) -> Any:
    """An engine's attribute, looking through wrappers that keep the engine as `inner`."""
    seen: object | None = storage
    while seen is not None:
        found = getattr(seen, name, None)
        if found is not None:
            return found
        seen = getattr(seen, "inner", None)
    return None


def write_coming(storage: object) -> AbstractContextManager[None]:
    """Tell the engine, for the duration of the block, that a large write (a transaction Bundle)
    is being prepared and will soon take a transaction: an engine that commits writers in
    groups may hold a commit briefly so that it joins. A hint only; nothing waits on it beyond
    the engine's own bound, and an engine without a use for it (its `write_coming` attribute)
    gets a block that does nothing."""
    hint = _engine_attribute(storage, "write_coming")
    return hint() if hint is not None else nullcontext()


def supports_transactions(storage: object) -> bool:
    """Whether the engine runs multi-document transactions (a transaction Bundle): an engine's
    `supports_transactions` attribute, True when it has none (SQLite always can; MongoDB only as
    a replica set or sharded cluster). Looks through wrappers that keep the engine as `inner`."""
    flag = _engine_attribute(storage, "supports_transactions")
    return True if flag is None else bool(flag)
