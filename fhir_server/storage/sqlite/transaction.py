"""Transactions on the SQLite engine, with group commit.

Each logical transaction (one FHIR write, or one transaction Bundle) runs inside a SAVEPOINT of a
shared physical transaction; the physical COMMIT, the one that waits for the disk (synchronous=FULL),
happens when no other logical transaction is queued, and every logical transaction it carries is
acknowledged only after it. So sixteen concurrent writers cost one fsync instead of sixteen,
nothing is reported stored before it is durable, and a failing logical transaction is rolled back
to its savepoint without touching the others.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import JsonDoc, SearchPage, StoredResource, Write
from fhir_server.storage.sqlite import records, search_sql
from fhir_server.storage.sqlite.rows import READ_SQL, apply_writes, row_to_stored

if TYPE_CHECKING:
    from fhir_server.storage.sqlite.engine import SqliteStorage

T = TypeVar("T")
log = logging.getLogger("fhir_server")


class SqliteTransaction:
    """Buffers writes; flushes them with the next read or the end, in one writer-thread hop."""

    def __init__(self, storage: SqliteStorage, group: GroupCommit) -> None:
        self._storage = storage
        self._group = group
        self._pending: list[Write] = []
        self.begun = False
        self.wrote = False

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the writer connection inside this transaction, after its buffered writes."""
        pending, self._pending = self._pending, []
        self.wrote = self.wrote or bool(pending)

        def job() -> T:
            conn = self._storage._writer_conn()
            if not self.begun:
                self._group.begin_physical(conn)
                conn.execute("SAVEPOINT tx")
                self.begun = True
            apply_writes(conn, pending)
            return fn(conn)

        return await self._storage._on_writer(job)

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        def fn(conn: sqlite3.Connection) -> StoredResource | None:
            row = conn.execute(READ_SQL, (resource_type, id)).fetchone()
            return row_to_stored(resource_type, id, row) if row else None

        return await self.run(fn)

    async def search(self, query: SearchQuery) -> SearchPage:
        return await self.run(lambda conn: search_sql.run_search(conn, query))

    async def write(self, write: Write) -> None:
        self._pending.append(write)

    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        now = time.time_ns() // 1000
        await self.run(lambda conn: records.put(conn, kind, key, doc, now))
        self.wrote = True

    async def release(self) -> None:
        """End this logical transaction, keeping its work in the physical one."""
        if self._pending or self.begun:
            await self.run(lambda conn: conn.execute("RELEASE tx"))

    async def rollback(self) -> None:
        self._pending = []
        if self.begun:

            def undo() -> None:
                conn = self._storage._writer_conn()
                try:
                    conn.execute("ROLLBACK TO tx")
                except sqlite3.OperationalError:
                    # The awaiting task was cancelled after RELEASE had run on this thread: the
                    # work already belongs to the shared transaction and commits with it.
                    return
                conn.execute("RELEASE tx")

            await self._storage._on_writer(undo)
            self.begun = False


class GroupCommit:
    def __init__(self, storage: SqliteStorage) -> None:
        self._storage = storage
        self._lock = asyncio.Lock()
        self._physical = False  # a BEGIN without COMMIT yet; touched on the writer thread only
        self._waiting: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None

    def begin_physical(self, conn: sqlite3.Connection) -> None:
        if not self._physical:
            conn.execute("BEGIN IMMEDIATE")
            self._physical = True

    def _commit_physical(self) -> None:
        if self._physical:
            conn = self._storage._writer_conn()
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            finally:
                self._physical = False

    @asynccontextmanager
    async def logical(self) -> AsyncIterator[SqliteTransaction]:
        done: asyncio.Future[None] | None = None
        async with self._lock:
            tx = SqliteTransaction(self._storage, self)
            try:
                yield tx
                await tx.release()
            except BaseException:
                await tx.rollback()
                raise
            if tx.wrote:
                done = asyncio.get_running_loop().create_future()
                self._waiting.append(done)
                if self._flusher is None or self._flusher.done():
                    self._flusher = asyncio.create_task(self._flush_soon())
            elif tx.begun and not self._waiting:
                await self._storage._on_writer(self._commit_physical)  # ends a read-only one
        if done is not None:
            await asyncio.shield(done)

    async def _flush_soon(self) -> None:
        # Transactions already queued on the lock run first and join this commit.
        try:
            await self.flush()
        except Exception:  # the waiting writers received the error; nothing else to tell
            log.exception("Group commit failed")

    async def flush(self) -> None:
        async with self._lock:
            waiting, self._waiting = self._waiting, []
            try:
                await self._storage._on_writer(self._commit_physical)
            except BaseException as exc:
                for f in waiting:
                    if not f.done():
                        f.set_exception(exc)
                raise
            for f in waiting:
                if not f.done():
                    f.set_result(None)
