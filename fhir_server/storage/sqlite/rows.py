"""Reading and writing one resource's rows: the current-version pointer, the history row, and
the index rows that go with it. Used by the engine and by its transactions."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from fhir_server.fhir.index_values import IndexValue
from fhir_server.storage.base import StoredResource, VersionConflict, Write
from fhir_server.storage.sqlite.index_rows import INSERTS, Row, rows_by_table
from fhir_server.storage.sqlite.schema import INDEX_TABLES

READ_SQL = (
    "SELECT r.version, r.last_updated, r.deleted, h.body FROM resources r "
    "JOIN history h ON h.seq = r.seq WHERE r.type = ? AND r.id = ?"
)
VREAD_SQL = "SELECT version, last_updated, method, body FROM history WHERE type = ? AND id = ? AND version = ?"
# A resource's index rows: (table, the column holding its pk).
_INDEXED = [(t, "pk") for t in INDEX_TABLES] + [("fts", "rowid")]
_DELETE_INDEX = [f"DELETE FROM {t} WHERE {key} = ?" for t, key in _INDEXED]


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


def _check_version(w: Write, current: int) -> None:
    if current != w.expected_version:
        res = w.resource
        raise VersionConflict(
            f"{res.resource_type}/{res.id} was changed by another request "
            f"(version {current}, expected {w.expected_version}); retry with the current version"
        )


def apply_write(conn: sqlite3.Connection, w: Write) -> None:
    """Store one new version and replace the resource's index rows. Runs inside a transaction."""
    res = w.resource
    cur = conn.execute(
        "SELECT pk, version FROM resources WHERE type = ? AND id = ?", (res.resource_type, res.id)
    ).fetchone()
    _check_version(w, cur[1] if cur else 0)
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


# -- many writes with a fixed number of statements ----------------------------------------------
#
# Each statement step releases the GIL while SQLite works and takes it back afterwards. While the
# event loop runs Python, taking it back waits for the loop to yield it (the switch interval) and
# then for a thread handoff: on this project's 2-core machine a row-by-row insert loop ran 20 to
# 180 times slower beside a busy Python thread than alone. A transaction Bundle is stored while
# the event loop prepares the next one, so a flush of many writes passes each table's rows as one
# JSON array, read with `json_each` (~10 % more Synthea ingest over a 1.3 GB store, session 4),
# and all those inserts run as one statement: a row inserted into a temporary view, whose
# INSTEAD OF trigger inserts each table's rows from that row's column for the table. One step
# releases the GIL once and takes it back once; a dozen statements took it back a dozen times,
# each time waiting for the event loop to let go of it (a quarter of the writer thread's time
# during Synthea ingest went to such waits, session 5).

_BATCH_DELETES = [
    f"DELETE FROM {t} WHERE {key} IN (SELECT value FROM json_each(?))" for t, key in _INDEXED
]
_BATCH_CURRENT = (
    "SELECT j.key, r.pk, r.version FROM json_each(?) j "
    "JOIN resources r ON r.type = j.value->>0 AND r.id = j.value->>1"
)
_BATCH_UPDATE = (
    "UPDATE resources SET version = u.value->>1, last_updated = u.value->>2, "
    "deleted = u.value->>3, seq = u.value->>4 FROM json_each(?) u WHERE resources.pk = u.value->>0"
)

_FLOAT_TABLES = frozenset({"idx_number", "idx_quantity", "idx_composite"})


def _flush_insert(insert: str, column: str) -> str:
    """`INSERT INTO t (...) VALUES (?,?)` -> the same insert of every row of the JSON array in the
    flush row's `column`."""
    head, _, values = insert.partition(" VALUES ")
    picks = ", ".join(f"value->>{i}" for i in range(values.count("?")))
    return f"{head} SELECT {picks} FROM json_each(NEW.{column})"


# The bodies travel as one BLOB (`bodies`), each history row giving its offset (from 1) and
# length: inside the JSON array they would be escaped by orjson and unescaped by SQLite (~7 µs
# more per Synthea resource on the writer thread). An empty body is X'', as substr gives NULL.
_FLUSH_HISTORY = (
    "INSERT INTO history (seq, type, id, version, last_updated, method, body) "
    "SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, "
    "coalesce(substr(NEW.bodies, value->>6, value->>7), X'') FROM json_each(NEW.history)"
)
_FLUSH_NEW = _flush_insert(
    "INSERT INTO resources (pk, type, id, version, last_updated, deleted, seq) "
    "VALUES (?,?,?,?,?,?,?)",
    "resources",
)
_FLUSH_COLUMNS = ("history", "bodies", "resources", *INSERTS)
_FLUSH_VIEW = (
    f"CREATE TEMP VIEW IF NOT EXISTS flush_rows ({', '.join(_FLUSH_COLUMNS)}) AS SELECT "
    + ", ".join("NULL" for _ in _FLUSH_COLUMNS)
)
_FLUSH_TRIGGER = (
    "CREATE TEMP TRIGGER IF NOT EXISTS flush_rows_insert INSTEAD OF INSERT ON flush_rows BEGIN "
    + " ".join(
        f"{sql};"
        for sql in [
            _FLUSH_HISTORY,
            _FLUSH_NEW,
            *(_flush_insert(sql, table) for table, sql in INSERTS.items()),
        ]
    )
    + " END"
)
_FLUSH = f"INSERT INTO flush_rows VALUES ({', '.join('?' for _ in _FLUSH_COLUMNS)})"


def _finite(row: Row) -> bool:
    """JSON has no infinity or NaN (orjson writes null), so rows holding one are bound instead."""
    return not any(x.__class__ is float and not math.isfinite(x) for x in row)


def apply_writes(conn: sqlite3.Connection, writes: Sequence[Write]) -> None:
    """`apply_write` for each of `writes`, in order, with the same rows as the result."""
    keys = [(w.resource.resource_type, w.resource.id) for w in writes]
    if len(writes) < 2 or len(set(keys)) != len(keys):
        for w in writes:  # one resource twice: each write must see the one before it
            apply_write(conn, w)
        return
    current: dict[int, tuple[int, int]] = {
        i: (pk, version)
        for i, pk, version in conn.execute(_BATCH_CURRENT, (orjson.dumps(keys),)).fetchall()
    }
    for i, w in enumerate(writes):
        _check_version(w, current[i][1] if i in current else 0)
    last_seq, last_pk = conn.execute(
        "SELECT (SELECT coalesce(max(seq), 0) FROM history), "
        "(SELECT coalesce(max(pk), 0) FROM resources)"
    ).fetchone()
    history: list[Row] = []
    bodies: list[bytes] = []
    offset = 1
    new: list[Row] = []
    updated: list[Row] = []
    index: dict[str, list[Row]] = {}
    for i, w in enumerate(writes):
        res = w.resource
        seq = last_seq + 1 + i
        history.append(
            (
                seq,
                res.resource_type,
                res.id,
                res.version,
                res.last_updated,
                w.method,
                offset,
                len(res.body),
            )
        )
        offset += len(res.body)
        bodies.append(res.body)
        deleted = int(res.deleted)
        if i in current:
            pk = current[i][0]
            updated.append((pk, res.version, res.last_updated, deleted, seq))
        else:
            last_pk += 1
            pk = last_pk
            new.append((pk, res.resource_type, res.id, res.version, res.last_updated, deleted, seq))
        if not res.deleted:
            for table, rows in rows_by_table(pk, res.resource_type, w.index).items():
                index.setdefault(table, []).extend(rows)
    if updated:
        conn.execute(_BATCH_UPDATE, (orjson.dumps(updated),))
        old = orjson.dumps([row[0] for row in updated])
        for sql in _BATCH_DELETES:
            conn.execute(sql, (old,))
    # JSON arrays as text, the bodies as a BLOB, NULL for a table with no rows
    flush: dict[str, str | bytes | None] = dict.fromkeys(_FLUSH_COLUMNS)
    flush["history"] = orjson.dumps(history).decode()
    flush["bodies"] = b"".join(bodies)
    if new:
        flush["resources"] = orjson.dumps(new).decode()
    for table, rows in index.items():
        if table in _FLOAT_TABLES and not all(map(_finite, rows)):
            conn.executemany(INSERTS[table], rows)
        else:
            flush[table] = orjson.dumps(rows).decode()
    params = tuple(flush.values())
    try:
        conn.execute(_FLUSH, params)
    except sqlite3.OperationalError as exc:
        if "flush_rows" not in str(exc):
            raise
        conn.execute(_FLUSH_VIEW)  # temporary objects live per connection: made on first use
        conn.execute(_FLUSH_TRIGGER)
        conn.execute(_FLUSH, params)
