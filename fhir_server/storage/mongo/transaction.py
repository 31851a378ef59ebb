"""Transactions on MongoDB: buffered writes applied in one multi-document transaction.

Optimistic versioning is enforced by the database twice over: the history document's `_id` is
`Type/id/version` (unique), and the current document is replaced only if it still has the version
the writer read (`{_id, v: expected}`); either failing aborts the transaction and becomes a
`VersionConflict` (409). So two processes updating one resource never lose a write.

Reads and searches run outside the MongoDB transaction until the first write is applied, and
inside it afterwards (so a transaction sees its own writes). Writes are buffered and applied with
the next read or at the end; if MongoDB reports a transient conflict while only buffered writes are
in flight, they are retried in a fresh transaction (their expected versions still guard them).

Within one process, a transaction locks each resource it reads or writes until it ends, so
concurrent requests updating one resource queue instead of failing (as on SQLite); across
processes the database's checks above decide.

On a standalone `mongod` (no replica set: no multi-document transactions) a transaction may write
one resource, applied as two ordered single-document writes; more raises `TransactionsUnsupported`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from fhir_server.errors import FhirError
from fhir_server.search.query import ChainCriterion, HasCriterion, ListCriterion, SearchQuery
from fhir_server.storage.base import JsonDoc, SearchPage, StoredResource, VersionConflict, Write
from fhir_server.storage.mongo import records
from fhir_server.storage.mongo.documents import (
    current_doc,
    history_doc,
    history_key,
    next_seq,
    resource_key,
    to_stored,
)
from fhir_server.storage.mongo.search import Searcher

if TYPE_CHECKING:
    from fhir_server.storage.mongo.engine import MongoStorage

Doc = dict[str, Any]
READ_FIELDS = {"t": 1, "i": 1, "v": 1, "u": 1, "d": 1, "b": 1, "pc": 1}
log = logging.getLogger("fhir_server")
Item = Write | tuple[str, str, JsonDoc]  # a new version, or an internal record (kind, key, doc)
LOCK_TIMEOUT = 10.0
_RETRIES = 3


def _transient(exc: OperationFailure) -> bool:
    """MongoDB labels write conflicts TransientTransactionError (code 112: WriteConflict); the
    mongoeco stand-in reports them by message only."""
    message = str((exc.details or {}).get("errmsg", "")).lower()
    return (
        exc.has_error_label("TransientTransactionError")
        or exc.code == 112
        or "write conflict" in message
    )


class TransactionsUnsupported(FhirError):
    status = 501
    code = "not-supported"


def _conflict(write: Write, detail: str = "") -> VersionConflict:
    res = write.resource
    return VersionConflict(
        f"{res.resource_type}/{res.id} was changed by another request "
        f"(expected version {write.expected_version}){detail}; retry with the current version"
    )


class KeyLocks:
    """Per-resource asyncio locks of one process, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def acquire(self, key: str) -> None:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            await asyncio.wait_for(lock.acquire(), LOCK_TIMEOUT)
        except BaseException:
            self._drop(key)
            raise

    def release(self, key: str) -> None:
        self._locks[key][0].release()
        self._drop(key)

    def _drop(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


async def apply_write(
    storage: MongoStorage, w: Write, session: AsyncClientSession | None, pc: str | None = None
) -> None:
    """Store one new version: the current document (only if it still has the expected version),
    its history document (unique per version), and the previous version's end (`nu`, for `_at`).

    In a MongoDB transaction all three commit together. On a standalone mongod they are three
    writes in this order, so a crash between them can lose a history entry but never leaves a
    version in history that the current document does not have. `pc`, the shard key value the
    writer read, goes into the filter: a sharded cluster needs it to move a document whose shard
    key changes (an Observation moved to another patient).
    """
    res = w.resource
    key = resource_key(res.resource_type, res.id)
    seq = next_seq(res.last_updated)
    if w.expected_version:
        doc = current_doc(res, w.index, 0)
        del doc["_id"], doc["pk"]
        if res.deleted:
            del doc["pc"]  # a deleted marker stays where the resource lived
        filt: Doc = {"_id": key, "v": w.expected_version}
        if pc is not None:
            filt["pc"] = pc
        result = await storage.resources.update_one(filt, {"$set": doc}, session=session)
        if result.matched_count != 1:
            raise _conflict(w)
    else:
        try:
            await storage.resources.insert_one(current_doc(res, w.index, seq), session=session)
        except DuplicateKeyError:
            raise _conflict(w, " (it exists already)") from None
    try:
        await storage.versions.insert_one(history_doc(res, w.method, seq), session=session)
    except DuplicateKeyError:
        raise _conflict(w, f" (version {res.version} exists)") from None
    if w.expected_version:
        prev = history_key(res.resource_type, res.id, w.expected_version)
        await storage.versions.update_one(
            {"_id": prev}, {"$set": {"nu": res.last_updated}}, session=session
        )


class MongoTransaction:
    def __init__(self, storage: MongoStorage) -> None:
        self._storage = storage
        self._multi = storage.transactions  # False on a standalone mongod
        # Started with the first write applied, after this transaction's locks are held: a
        # MongoDB transaction begins no earlier than needed, and a read-only one needs none.
        self._session: AsyncClientSession | None = None
        self._pending: list[Item] = []
        self._applied: list[Item] = []
        self._started = False
        self._read_inside = False  # a read ran inside the MongoDB transaction
        self.locked: list[str] = []
        self._pc: dict[str, str] = {}  # shard key values of the resources read

    async def _lock(self, key: str) -> None:
        if key not in self.locked:
            try:
                await self._storage.locks.acquire(key)
            except TimeoutError:
                raise VersionConflict(f"{key} is busy in another transaction; retry") from None
            self.locked.append(key)

    async def _flush(self) -> None:
        """Apply the buffered items; a transient conflict replays them all in a fresh MongoDB
        transaction, unless a read already ran inside the failed one (it may be stale)."""
        if not self._pending:
            return
        if not self._multi:
            pending, self._pending = self._pending, []
            for item in pending:
                await self._apply(item, None)
            self._applied += pending
            return
        for attempt in range(_RETRIES):
            try:
                if self._session is None:
                    self._session = self._storage.client.start_session()
                if not self._started:
                    await self._session.start_transaction()
                    self._started = True
                pending, self._pending = self._pending, []
                self._applied += pending
                for item in pending:
                    await self._apply(item, self._session)
                return
            except OperationFailure as exc:
                await self._replay_or_raise(exc, attempt)
            except BaseException:
                await self._abort()
                raise

    async def _replay_or_raise(self, exc: OperationFailure, attempt: int) -> None:
        await self._abort()
        if not _transient(exc):
            raise exc
        if self._read_inside or attempt == _RETRIES - 1:
            log.info("MongoDB transaction conflict: %s", exc.details)
            raise self._conflict(" (concurrent write)") from exc
        self._pending, self._applied = [*self._applied, *self._pending], []

    async def _apply(self, item: Item, session: AsyncClientSession | None) -> None:
        if isinstance(item, Write):
            key = resource_key(item.resource.resource_type, item.resource.id)
            await apply_write(self._storage, item, session, self._pc.get(key))
        else:
            await records.put(self._storage.records, *item, session=session)

    def _conflict(self, detail: str) -> FhirError:
        first = next((i for i in [*self._applied, *self._pending] if isinstance(i, Write)), None)
        if first is None:
            return VersionConflict(f"The transaction met a concurrent write{detail}; retry")
        return _conflict(first, detail)

    async def _abort(self) -> None:
        if self._session is not None and self._started:
            self._started = False
            with suppress(PyMongoError):
                await self._session.abort_transaction()

    def _pending_writes(self) -> list[Write]:
        return [i for i in self._pending if isinstance(i, Write)]

    def _search_sees_pending(self, query: SearchQuery) -> bool:
        """Whether buffered writes could change this search's result (then they go first)."""
        types = {w.resource.resource_type for w in self._pending_writes()}
        if not types:
            return False
        if not query.resource_types or query.includes or types & set(query.resource_types):
            return True
        inner = (ChainCriterion, HasCriterion, ListCriterion)
        return any(isinstance(c, inner) for cl in query.clauses for c in cl.criteria)

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        key = resource_key(resource_type, id)
        await self._lock(key)
        if self._multi and any(
            resource_key(w.resource.resource_type, w.resource.id) == key
            for w in self._pending_writes()
        ):
            await self._flush()
        self._read_inside = self._read_inside or self._started
        doc = await self._storage.resources.find_one(
            {"_id": key}, READ_FIELDS, session=self._session if self._started else None
        )
        if doc is None:
            return None
        if doc.get("pc"):
            self._pc[key] = doc["pc"]
        return to_stored(doc)

    async def search(self, query: SearchQuery) -> SearchPage:
        if self._multi and self._search_sees_pending(query):
            await self._flush()
        self._read_inside = self._read_inside or self._started
        return await Searcher(
            self._storage.resources, self._session if self._started else None
        ).search(query)

    async def write(self, write: Write) -> None:
        writes = [i for i in [*self._pending, *self._applied] if isinstance(i, Write)]
        if not self._multi and writes:
            raise TransactionsUnsupported(
                "This server's MongoDB is a standalone mongod, which has no multi-document "
                "transactions: a request that writes several resources together (a transaction "
                "Bundle) needs MongoDB running as a replica set. Send the entries as a batch "
                "Bundle, or run MongoDB as a replica set (see the README, 'Running on MongoDB')."
            )
        await self._lock(resource_key(write.resource.resource_type, write.resource.id))
        self._pending.append(write)

    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        """Written with this transaction's resources (on a standalone mongod: after them)."""
        self._pending.append((kind, key, doc))

    async def commit(self) -> None:
        for attempt in range(_RETRIES):
            await self._flush()
            if not self._started:
                return
            try:
                await self._commit_once()
                self._started = False
                return
            except OperationFailure as exc:
                await self._replay_or_raise(exc, attempt)

    async def _commit_once(self) -> None:
        assert self._session is not None
        for attempt in range(_RETRIES):
            try:
                await self._session.commit_transaction()
                return
            except OperationFailure as exc:
                if not exc.has_error_label("UnknownTransactionCommitResult") or attempt == 2:
                    raise

    async def rollback(self) -> None:
        self._pending = []
        await self._abort()

    async def end(self) -> None:
        if self._session is not None:
            await self._session.end_session()
            self._session = None


@asynccontextmanager
async def transaction(storage: MongoStorage) -> AsyncIterator[MongoTransaction]:
    tx = MongoTransaction(storage)
    try:
        try:
            yield tx
            await tx.commit()
        except BaseException:
            await tx.rollback()
            raise
    finally:
        for key in tx.locked:
            storage.locks.release(key)
        await tx.end()
