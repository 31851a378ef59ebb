"""Transactions on the SQLite engine, with group commit.

Each logical transaction (one FHIR write, or one transaction Bundle) runs inside a SAVEPOINT of a
shared physical transaction; the physical COMMIT, the one that waits for the disk (synchronous=FULL),
happens when no other logical transaction is queued, and every logical transaction it carries is
acknowledged only after it. So sixteen concurrent writers cost one fsync instead of sixteen,
nothing is reported stored before it is durable, and a failing logical transaction is rolled back
to its savepoint without touching the others.

A commit writes every page its transactions changed, and on this engine that costs ~10 µs of CPU
per 4 KiB page plus the fsync; a transaction Bundle of ~300 Synthea resources changes ~2,000-2,500
pages, and consecutive Bundles share many of them (the ends of the tables and of the pk-ordered
indexes, the full-text segments). So while a large writer announces itself (`write_coming`, from
the start of a Bundle's preparation until it asks for its transaction), a commit waits for it, up
to `COMMIT_WAIT_S`: three Bundles per commit wrote ~4.5 pages per resource instead of ~7.
Single writes do not announce themselves and never wait.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, TypeVar

from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import JsonDoc, SearchPage, StoredResource, Write
from fhir_server.storage.sqlite import records, search_sql
from fhir_server.storage.sqlite.rows import READ_SQL, apply_writes, row_to_stored

if TYPE_CHECKING:
    from fhir_server.storage.sqlite.engine import SqliteStorage

T = TypeVar("T")
log = logging.getLogger("fhir_server")

# How long a commit may wait for announced writers: short against a Bundle's own ~0.1-1 s.
COMMIT_WAIT_S = 0.05


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
        self._coming = 0  # writers announced by `write_coming`
        self._came: asyncio.Future[None] | None = None  # resolved when one stops announcing

    @contextmanager
    def write_coming(self) -> Iterator[None]:
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1
            if self._came is not None and not self._came.done():
                self._came.set_result(None)

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
            self._storage._checkpointer.committed()

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
        # Transactions already queued on the lock run first and join this commit; announced ones
        # are waited for (a bounded while): each takes the lock as it stops announcing, so ahead
        # of this flush.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COMMIT_WAIT_S
        while self._coming and (left := deadline - loop.time()) > 0:
            self._came = loop.create_future()
            try:
                await asyncio.wait_for(self._came, left)
            except TimeoutError:
                break
        try:
            await self.flush()
        except Exception:  # the waiting writers received the error; nothing else to tell
            log.exception("Group commit failed")

    async def flush(self) -> None:
        # The COMMIT is queued on the writer thread under the lock, and the lock is let go
        # before it finishes: the next transaction prepares its writes meanwhile, and its own
        # jobs on the writer thread run after the COMMIT, in a new physical transaction. Its
        # writers are acknowledged by the flush after that one.
        async with self._lock:
            waiting, self._waiting = self._waiting, []
            commit = self._storage._on_writer(self._commit_physical)
        try:
            await commit
        except BaseException as exc:
            for f in waiting:
                if not f.done():
                    f.set_exception(exc)
            raise
        for f in waiting:
            if not f.done():
                f.set_result(None)
