"""MongoDB engine through PyMongo's native async API (`pymongo.AsyncMongoClient`, PyMongo >= 4.9).

Not motor: its maintainers deprecate it in favour of this API. Collections (see `documents.py` for
their shapes and `indexes.py` for their indexes): `resources` (the current version of every
resource with its search values), `history` (every version), `records` and `leases` (background
work that must happen once across processes, see `records.py`), `meta` (schema version). The
database name is the URI's path (`fhir` when absent). A replica set (or sharded cluster) is needed
for transaction Bundles; on a standalone `mongod` the engine says so at start-up and refuses them
(see `transaction.py`). Every server process runs the same idempotent start-up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import unquote, urlsplit

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from fhir_server.fhir.index_values import IndexValue
from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import (
    HistoryPage,
    HistoryQuery,
    JsonDoc,
    Record,
    SearchPage,
    StoredResource,
)
from fhir_server.storage.mongo import records
from fhir_server.storage.mongo import transaction as tx_module
from fhir_server.storage.mongo.documents import index_fields, resource_key, to_stored
from fhir_server.storage.mongo.indexes import HISTORY_INDEXES, RECORD_INDEXES, RESOURCE_INDEXES
from fhir_server.storage.mongo.search import Searcher, run_history
from fhir_server.storage.mongo.transaction import KeyLocks, MongoTransaction

Doc = dict[str, Any]
SCHEMA_VERSION = 1
log = logging.getLogger("fhir_server")


def supports_transactions(hello: dict[str, Any]) -> bool:
    """A replica set member (`setName`) or a mongos (`msg: isdbgrid`) runs multi-document
    transactions; a standalone mongod does not."""
    return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"


def database_name(uri: str) -> str:
    """The database named by the URI's path, `fhir` when it names none."""
    path = urlsplit(uri).path.strip("/")
    return unquote(path.split("/", 1)[0]) or "fhir"


class MongoStorage:
    def __init__(self, uri: str, *, client_options: dict[str, Any] | None = None) -> None:
        self.uri = uri
        self.db_name = database_name(uri)
        self._options = client_options or {}
        self._client: AsyncMongoClient[Doc] | None = None
        self.transactions = False
        self.locks = KeyLocks()

    @property
    def supports_transactions(self) -> bool:
        """False on a standalone mongod (known once `open` has run): transaction Bundles are
        refused and the CapabilityStatement does not list `transaction`."""
        return self.transactions

    # -- collections ---------------------------------------------------------------------------
    @property
    def client(self) -> AsyncMongoClient[Doc]:
        assert self._client is not None, "storage is not open"
        return self._client

    @property
    def db(self) -> AsyncDatabase[Doc]:
        return self.client[self.db_name]

    @property
    def resources(self) -> AsyncCollection[Doc]:
        return self.db["resources"]

    @property
    def versions(self) -> AsyncCollection[Doc]:
        """The `history` collection."""
        return self.db["history"]

    @property
    def records(self) -> AsyncCollection[Doc]:
        return self.db["records"]

    @property
    def leases(self) -> AsyncCollection[Doc]:
        return self.db["leases"]

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        self._client = AsyncMongoClient(self.uri, tz_aware=True, **self._options)
        hello = await self._client.admin.command("hello")
        self.transactions = supports_transactions(hello)
        if not self.transactions:
            log.warning(
                "MongoDB (database %s) is a standalone mongod: no multi-document transactions, so "
                "transaction Bundles will be refused. Run MongoDB as a replica set (a single "
                "node is enough) for production.",
                self.db_name,
            )
        await self.resources.create_indexes(RESOURCE_INDEXES)
        await self.versions.create_indexes(HISTORY_INDEXES)
        await self.records.create_indexes(RECORD_INDEXES)
        with suppress(DuplicateKeyError):  # another process inserted it at the same moment
            await self.db["meta"].update_one(
                {"_id": "schema_version"}, {"$setOnInsert": {"value": SCHEMA_VERSION}}, upsert=True
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def ready(self) -> bool:
        try:
            await self.client.admin.command("ping")
            return True
        except (PyMongoError, AssertionError):
            return False

    async def drop(self) -> None:
        """Remove the whole database (tests)."""
        await self.client.drop_database(self.db_name)

    # -- reads ---------------------------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        doc = await self.resources.find_one(
            {"_id": resource_key(resource_type, id)},
            {"t": 1, "i": 1, "v": 1, "u": 1, "d": 1, "b": 1},
        )
        return to_stored(doc) if doc else None

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        doc = await self.versions.find_one({"_id": f"{resource_type}/{id}/{version}"})
        return to_stored(doc) if doc else None

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await run_history(self.versions, query)

    async def search(self, query: SearchQuery) -> SearchPage:
        return await Searcher(self.resources, None).search(query)

    async def count(self, resource_type: str | None = None) -> int:
        filt: Doc = {"d": False}
        if resource_type is not None:
            filt["t"] = resource_type
        return await self.resources.count_documents(filt)

    # -- writes --------------------------------------------------------------------------------
    async def reindex(self, items: Sequence[tuple[StoredResource, Sequence[IndexValue]]]) -> int:
        done = 0
        for stored, index in items:
            result = await self.resources.update_one(
                {"_id": resource_key(stored.resource_type, stored.id), "v": stored.version},
                {"$set": index_fields(index)},
            )
            done += result.matched_count
        return done

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MongoTransaction]:
        async with tx_module.transaction(self) as tx:
            yield tx

    # -- internal records and leases -----------------------------------------------------------
    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        await records.put(self.records, kind, key, doc)

    async def get_record(self, kind: str, key: str) -> Record | None:
        return await records.get(self.records, kind, key)

    async def list_records(
        self, kind: str, after_key: str | None = None, limit: int = 100
    ) -> list[Record]:
        return await records.list_after(self.records, kind, after_key, limit)

    async def delete_record(self, kind: str, key: str) -> bool:
        return await records.delete(self.records, kind, key)

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        return await records.acquire_lease(self.leases, name, owner, ttl_s)

    async def release_lease(self, name: str, owner: str) -> None:
        await records.release_lease(self.leases, name, owner)
