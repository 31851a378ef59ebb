"""Internal records and leases on SQLite (see `storage.base.Records`): plain SQL on one connection."""

from __future__ import annotations

import sqlite3

from fhir_server.fhir import jsonio
from fhir_server.storage.base import JsonDoc, Record

DDL = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, doc BLOB NOT NULL, updated INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL
) WITHOUT ROWID;
"""


def put(conn: sqlite3.Connection, kind: str, key: str, doc: JsonDoc, now_us: int) -> None:
    conn.execute(
        "INSERT INTO records VALUES (?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE "
        "SET doc = excluded.doc, updated = excluded.updated",
        (kind, key, jsonio.dumps(doc), now_us),
    )


def get(conn: sqlite3.Connection, kind: str, key: str) -> Record | None:
    row = conn.execute(
        "SELECT doc, updated FROM records WHERE kind = ? AND key = ?", (kind, key)
    ).fetchone()
    return Record(kind, key, jsonio.loads(row[0]), row[1]) if row else None


def list_after(
    conn: sqlite3.Connection, kind: str, after_key: str | None, limit: int
) -> list[Record]:
    rows = conn.execute(
        "SELECT key, doc, updated FROM records WHERE kind = ? AND key > ? ORDER BY key LIMIT ?",
        (kind, after_key or "", limit),
    ).fetchall()
    return [Record(kind, k, jsonio.loads(d), u) for k, d, u in rows]


def delete(conn: sqlite3.Connection, kind: str, key: str) -> bool:
    return conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key)).rowcount > 0


def acquire_lease(
    conn: sqlite3.Connection, name: str, owner: str, ttl_s: float, now_s: float
) -> bool:
    cur = conn.execute(
        "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
        "SET owner = excluded.owner, expires = excluded.expires "
        "WHERE leases.owner = excluded.owner OR leases.expires <= ?",
        (name, owner, now_s + ttl_s, now_s),
    )
    return cur.rowcount > 0


def release_lease(conn: sqlite3.Connection, name: str, owner: str) -> None:
    conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
