"""SQLite engine: one writer connection on its own thread, reader connections for searches.

Why this shape: SQLite allows one writer at a time, so writes go through a single connection,
serialised by the group commit in `transaction.py` (across processes SQLite's own lock with a busy
timeout serialises them). A transaction buffers its writes and flushes them together with the next
read or its end, so a simple create is one hop to the writer thread. Point reads (read, vread) are primary-key lookups of
a few microseconds and run directly on the event loop's own connection: a thread hop would cost more
than the query. So do cheap searches (see `search`). WAL mode lets readers run alongside the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

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
from fhir_server.storage.sqlite import records, search_sql
from fhir_server.storage.sqlite.checkpoint import Checkpointer
from fhir_server.storage.sqlite.migrate import migrate
from fhir_server.storage.sqlite.rows import READ_SQL, VREAD_SQL, reindex_current, row_to_stored
from fhir_server.storage.sqlite.schema import DDL, FTS_DDL
from fhir_server.storage.sqlite.transaction import GroupCommit, SqliteTransaction

T = TypeVar("T")
# A search runs on the event loop while it stays under _LOOP_SEARCH_TICKS x _TICK_STEPS SQLite
# VM steps (about a tenth of a millisecond), otherwise on a reader thread.
_TICK_STEPS = 1000
_LOOP_SEARCH_TICKS = 20


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    _use_wal(conn)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    return conn


def _use_wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Switch the database to WAL mode, waiting for other connections that are doing the same.

    Changing the journal mode answers "database is locked" at once, without SQLite's busy
    handler, while another connection holds a lock on the file; several workers opening a new
    store together meet exactly that, so retry for up to `wait_s`.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class SqliteStorage:
    supports_transactions = True  # storage.base.supports_transactions

    def __init__(self, path: Path, *, synchronous: str = "FULL", readers: int = 2) -> None:
        self.path = path
        self._synchronous = synchronous
        self._readers = readers
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._loop_conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._group = GroupCommit(self)
        self._checkpointer = Checkpointer(lambda: _connect(self.path, self._synchronous))
        self.write_coming = self._group.write_coming  # storage.base.write_coming

    # -- connections ---------------------------------------------------------------------------
    def _writer_conn(self) -> sqlite3.Connection:
        assert self._writer is not None, "storage is not open"
        return self._writer

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._synchronous)
            self._local.conn = conn
            self._all_conns.append(conn)
        return conn

    def _on_writer(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run `fn` on the writer thread. It is queued there at once, so jobs run in the order
        of these calls even if their futures are awaited later (`GroupCommit.flush`)."""
        assert self._writer_pool is not None, "storage is not open"
        return asyncio.get_running_loop().run_in_executor(self._writer_pool, fn)

    async def _on_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._reader_pool is not None, "storage is not open"
        return await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, lambda: fn(self._reader_conn())
        )

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader_pool = ThreadPoolExecutor(self._readers, thread_name_prefix="sqlite-reader")

        def init() -> None:
            self._writer = _connect(self.path, self._synchronous)
            self._writer.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's work
            self._writer.executescript(DDL)
            self._writer.executescript(FTS_DDL)
            self._writer.executescript(records.DDL)
            migrate(self._writer)
            self._optimize(self._writer)

        await self._on_writer(init)
        self._loop_conn = _connect(self.path, self._synchronous)
        self._checkpointer.start()

    @staticmethod
    def _optimize(conn: sqlite3.Connection) -> None:
        """Refresh the planner's statistics where SQLite thinks they are stale (bounded work).

        Under a write lock taken first: `optimize` reads, then writes, and a connection whose
        read snapshot went stale meanwhile (another process opening the same store committed)
        is refused at once, without the busy timeout."""
        conn.execute("PRAGMA analysis_limit=1000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("PRAGMA optimize")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def optimize(self) -> None:
        await self._on_writer(lambda: self._optimize(self._writer_conn()))

    async def close(self) -> None:
        if self._writer_pool is not None and self._writer is not None:
            await self._group.flush()
            await self.optimize()
        self._checkpointer.stop()
        for pool in (self._reader_pool, self._writer_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        for conn in (*self._all_conns, self._writer, self._loop_conn):
            if conn is not None:
                conn.close()
        self._all_conns.clear()
        self._writer = self._loop_conn = None
        self._writer_pool = self._reader_pool = None

    async def ready(self) -> bool:
        try:
            assert self._loop_conn is not None
            self._loop_conn.execute("SELECT 1 FROM resources LIMIT 1").fetchall()
            return True
        except (sqlite3.Error, AssertionError):
            return False

    # -- reads ---------------------------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        assert self._loop_conn is not None, "storage is not open"
        row = self._loop_conn.execute(READ_SQL, (resource_type, id)).fetchone()
        return row_to_stored(resource_type, id, row) if row else None

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        assert self._loop_conn is not None, "storage is not open"
        row = self._loop_conn.execute(VREAD_SQL, (resource_type, id, version)).fetchone()
        if not row:
            return None
        v, lu, method, body = row
        return StoredResource(resource_type, id, v, lu, method == "DELETE", bytes(body))

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await self._on_reader(lambda conn: search_sql.run_history(conn, query))

    async def search(self, query: SearchQuery) -> SearchPage:
        """Most searches cost less than the hop to a reader thread and back, so each first runs
        on the event loop's connection under a small budget of SQLite VM steps; one that runs out
        is interrupted (its partial work discarded) and run again on a reader thread."""
        conn = self._loop_conn
        assert conn is not None, "storage is not open"
        ticks = _LOOP_SEARCH_TICKS

        def tick() -> int:
            nonlocal ticks
            ticks -= 1
            return 1 if ticks < 0 else 0

        conn.set_progress_handler(tick, _TICK_STEPS)
        try:
            return search_sql.run_search(conn, query)
        except sqlite3.OperationalError:
            if ticks >= 0:  # a real error, not the budget
                raise
        finally:
            conn.set_progress_handler(None, 0)
        return await self._on_reader(lambda c: search_sql.run_search(c, query))

    async def count(self, resource_type: str | None = None) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            if resource_type is None:
                row = conn.execute("SELECT count(*) FROM resources WHERE deleted = 0").fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*) FROM resources WHERE type = ? AND deleted = 0",
                    (resource_type,),
                ).fetchone()
            return int(row[0])

        return await self._on_reader(fn)

    # -- writes --------------------------------------------------------------------------------
    async def reindex(self, items: Sequence[tuple[StoredResource, Sequence[IndexValue]]]) -> int:
        async with self.transaction() as tx:
            return await tx.run(lambda conn: reindex_current(conn, items))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        async with self._group.logical() as tx:
            yield tx

    # -- internal records and leases -----------------------------------------------------------
    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        async with self.transaction() as tx:
            await tx.put_record(kind, key, doc)

    async def get_record(self, kind: str, key: str) -> Record | None:
        return await self._on_reader(lambda conn: records.get(conn, kind, key))

    async def list_records(
        self, kind: str, after_key: str | None = None, limit: int = 100
    ) -> list[Record]:
        return await self._on_reader(lambda conn: records.list_after(conn, kind, after_key, limit))

    async def delete_record(self, kind: str, key: str) -> bool:
        async with self.transaction() as tx:
            deleted = await tx.run(lambda conn: records.delete(conn, kind, key))
            tx.wrote = True
            return deleted

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        async with self.transaction() as tx:
            now = time.time()
            held = await tx.run(lambda conn: records.acquire_lease(conn, name, owner, ttl_s, now))
            tx.wrote = True
            return held

    async def release_lease(self, name: str, owner: str) -> None:
        async with self.transaction() as tx:
            await tx.run(lambda conn: records.release_lease(conn, name, owner))
            tx.wrote = True
