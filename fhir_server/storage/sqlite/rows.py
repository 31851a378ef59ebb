"""Reading and writing one resource's rows: the current-version pointer, the history row, and
the index rows that go with it. Used by the engine and by its transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from fhir_server.fhir.index_values import IndexValue
from fhir_server.storage.base import StoredResource, VersionConflict, Write
from fhir_server.storage.sqlite.index_rows import INSERTS, rows_by_table
from fhir_server.storage.sqlite.schema import INDEX_TABLES

READ_SQL = (
    "SELECT r.version, r.last_updated, r.deleted, h.body FROM resources r "
    "JOIN history h ON h.seq = r.seq WHERE r.type = ? AND r.id = ?"
)
VREAD_SQL = "SELECT version, last_updated, method, body FROM history WHERE type = ? AND id = ? AND version = ?"
_DELETE_INDEX = [f"DELETE FROM {t} WHERE pk = ?" for t in INDEX_TABLES]
_DELETE_INDEX.append("DELETE FROM fts WHERE rowid = ?")


def row_to_stored(rtype: str, id: str, row: tuple[Any, ...]) -> StoredResource:
    version, last_updated, deleted, body = row
    return StoredResource(rtype, id, version, last_updated, bool(deleted), bytes(body))


def replace_index(
    conn: sqlite3.Connection, pk: int, rtype: str, index: Sequence[IndexValue], *, new: bool = False
) -> None:
    """Write `index` as a resource's index rows, dropping its old ones unless it is `new`."""
    if not new:
        for sql in _DELETE_INDEX:
            conn.execute(sql, (pk,))
    for table, rows in rows_by_table(pk, rtype, index).items():
        conn.executemany(INSERTS[table], rows)


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
    else:
        pk = conn.execute(
            "INSERT INTO resources (type, id, version, last_updated, deleted, seq) "
            "VALUES (?,?,?,?,?,?)",
            (res.resource_type, res.id, res.version, res.last_updated, int(res.deleted), seq),
        ).lastrowid
    assert pk is not None
    replace_index(conn, pk, res.resource_type, () if res.deleted else w.index, new=not cur)


def reindex_current(
    conn: sqlite3.Connection, items: Sequence[tuple[StoredResource, Sequence[IndexValue]]]
) -> int:
    """Replace the index rows of these versions if they are still current; how many were."""
    done = 0
    for stored, index in items:
        row = conn.execute(
            "SELECT pk, version FROM resources WHERE type = ? AND id = ?",
            (stored.resource_type, stored.id),
        ).fetchone()
        if row is None or row[1] != stored.version:
            continue  # written again meanwhile: that write indexed it already
        replace_index(conn, row[0], stored.resource_type, index)
        done += 1
    return done
