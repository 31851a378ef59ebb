"""SQLite engine: one writer connection on its own thread, reader connections for searches.

Why this shape: SQLite allows one writer at a time, so writes go through a single connection and
an asyncio lock (across processes SQLite's own lock with a busy timeout serialises them). A
transaction buffers its writes and flushes them together with the next read or the commit, so a
simple create is one hop to the writer thread. Point reads (read, vread) are primary-key lookups of
a few microseconds and run directly on the event loop's own connection: a thread hop would cost more
than the query. WAL mode lets readers run alongside the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fhir_server.fhir.index_values import IndexValue
from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import (
    HistoryEntry,
    HistoryPage,
    HistoryQuery,
    SearchPage,
    StoredResource,
    VersionConflict,
    Write,
)
from fhir_server.storage.sqlite import search_sql
from fhir_server.storage.sqlite.index_rows import INSERTS, rows_by_table
from fhir_server.storage.sqlite.schema import DDL, FTS_DDL, INDEX_TABLES, SCHEMA_VERSION
from fhir_server.storage.sqlite.transaction import GroupCommit, SqliteTransaction

T = TypeVar("T")

_READ_SQL = (
    "SELECT r.version, r.last_updated, r.deleted, h.body FROM resources r "
    "JOIN history h ON h.seq = r.seq WHERE r.type = ? AND r.id = ?"
)
_VREAD_SQL = "SELECT version, last_updated, method, body FROM history WHERE type = ? AND id = ? AND version = ?"
_DELETE_INDEX = {t: f"DELETE FROM {t} WHERE pk = ?" for t in INDEX_TABLES}
_DELETE_INDEX["fts"] = "DELETE FROM fts WHERE rowid = ?"


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    return conn


def _row_to_stored(rtype: str, id: str, row: tuple[Any, ...]) -> StoredResource:
    version, last_updated, deleted, body = row
    return StoredResource(rtype, id, version, last_updated, bool(deleted), bytes(body))


READ_SQL = _READ_SQL


def apply_write(conn: sqlite3.Connection, w: Write) -> None:
    """Store one new version and replace the resource's index rows. Runs inside a transaction."""
    res = w.resource
    cur = conn.execute(
        "SELECT pk, version FROM resources WHERE type = ? AND id = ?", (res.resource_type, res.id)
    ).fetchone()
    current = cur[1] if cur else 0
    if current != w.expected_version:
        raise VersionConflict(
            f"{res.resource_type}/{res.id} was changed by another request "
            f"(version {current}, expected {w.expected_version}); retry with the current version"
        )
    seq = conn.execute(
        "INSERT INTO history (type, id, version, last_updated, method, body) VALUES (?,?,?,?,?,?)",
        (res.resource_type, res.id, res.version, res.last_updated, w.method, res.body),
    ).lastrowid
    if cur:
        pk = cur[0]
        conn.execute(
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, seq = ? WHERE pk = ?",
            (res.version, res.last_updated, int(res.deleted), seq, pk),
        )
        for sql in _DELETE_INDEX.values():
            conn.execute(sql, (pk,))
    else:
        pk = conn.execute(
            "INSERT INTO resources (type, id, version, last_updated, deleted, seq) "
            "VALUES (?,?,?,?,?,?)",
            (res.resource_type, res.id, res.version, res.last_updated, int(res.deleted), seq),
        ).lastrowid
    assert pk is not None
    if not res.deleted:
        for table, rows in rows_by_table(pk, res.resource_type, w.index).items():
            conn.executemany(INSERTS[table], rows)


class SqliteStorage:
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

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        assert self._writer_pool is not None, "storage is not open"
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn)

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
            self._writer.executescript(DDL)
            self._writer.executescript(FTS_DDL)
            self._writer.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._optimize(self._writer)

        await self._on_writer(init)
        self._loop_conn = _connect(self.path, self._synchronous)

    @staticmethod
    def _optimize(conn: sqlite3.Connection) -> None:
        """Refresh the planner's statistics where SQLite thinks they are stale (bounded work)."""
        conn.execute("PRAGMA analysis_limit=1000")
        conn.execute("PRAGMA optimize")

    async def optimize(self) -> None:
        await self._on_writer(lambda: self._optimize(self._writer_conn()))

    async def close(self) -> None:
        if self._writer_pool is not None and self._writer is not None:
            await self._group.flush()
            await self.optimize()
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
        row = self._loop_conn.execute(_READ_SQL, (resource_type, id)).fetchone()
        return _row_to_stored(resource_type, id, row) if row else None

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        assert self._loop_conn is not None, "storage is not open"
        row = self._loop_conn.execute(_VREAD_SQL, (resource_type, id, version)).fetchone()
        if not row:
            return None
        v, lu, method, body = row
        return StoredResource(resource_type, id, v, lu, method == "DELETE", bytes(body))

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await self._on_reader(lambda conn: search_sql.run_history(conn, query))

    async def search(self, query: SearchQuery) -> SearchPage:
        return await self._on_reader(lambda conn: search_sql.run_search(conn, query))

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
        def fn(conn: sqlite3.Connection) -> int:
            done = 0
            for stored, index in items:
                row = conn.execute(
                    "SELECT pk, version FROM resources WHERE type = ? AND id = ?",
                    (stored.resource_type, stored.id),
                ).fetchone()
                if row is None or row[1] != stored.version:
                    continue  # written again meanwhile: that write indexed it already
                for sql in _DELETE_INDEX.values():
                    conn.execute(sql, (row[0],))
                for table, rows in rows_by_table(row[0], stored.resource_type, index).items():
                    conn.executemany(INSERTS[table], rows)
                done += 1
            return done

        async with self.transaction() as tx:
            return await tx._run(fn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        async with self._group.logical() as tx:
            yield tx


__all__ = ["HistoryEntry", "SqliteStorage"]
