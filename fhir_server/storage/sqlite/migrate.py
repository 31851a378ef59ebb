"""Bringing an older store's schema up to date at open, inside one transaction."""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict

from fhir_server.fhir.index_values import DateValue, IndexValue, ReferenceValue, TokenValue
from fhir_server.fhir.paired_index import PAIRED_DATE, PAIRED_REFERENCES, PAIRED_TOKENS
from fhir_server.storage.sqlite.index_rows import INSERTS, pair_rows
from fhir_server.storage.sqlite.schema import SCHEMA_VERSION, URL_INDEX

log = logging.getLogger("fhir_server")
_CHUNK = 20_000


def _in(names: frozenset[str]) -> str:
    return ",".join(f"'{n}'" for n in sorted(names))  # constant names, not user input


def build_pairs(conn: sqlite3.Connection) -> int:
    """Version 1 -> 2: the pair rows of every current resource, from its stored index rows."""
    top = conn.execute("SELECT COALESCE(MAX(pk), 0) FROM resources").fetchone()[0]
    written = 0
    for lo in range(0, top + 1, _CHUNK):
        hi = lo + _CHUNK
        values: dict[int, list[IndexValue]] = defaultdict(list)
        types: dict[int, str] = {}
        for pk, rtype, param, ttype, tid in conn.execute(
            "SELECT pk, type, param, target_type, target_id FROM idx_reference "
            f"WHERE pk >= ? AND pk < ? AND param IN ({_in(PAIRED_REFERENCES)})",
            (lo, hi),
        ):
            values[pk].append(ReferenceValue(param, ttype, tid))
            types[pk] = rtype
        if not values:
            continue
        for pk, param, system, code in conn.execute(
            "SELECT pk, param, system, code FROM idx_token "
            f"WHERE pk >= ? AND pk < ? AND param IN ({_in(PAIRED_TOKENS)})",
            (lo, hi),
        ):
            if pk in values:
                values[pk].append(TokenValue(param, system, code))
        for pk, low, high in conn.execute(
            "SELECT pk, low, high FROM idx_date WHERE pk >= ? AND pk < ? AND param = ?",
            (lo, hi, PAIRED_DATE),
        ):
            if pk in values:
                values[pk].append(DateValue(PAIRED_DATE, low, high))
        rows = [row for pk, vs in values.items() for row in pair_rows(pk, types[pk], vs)]
        conn.executemany(INSERTS["idx_pair"], rows)
        written += len(rows)
    return written


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the store to SCHEMA_VERSION. Several processes may open one store at once, so the
    version is read again under the write lock before anything is built."""
    # A store without a version row is new: the DDL just made it current. (Every older store has
    # the row, so this never marks an old one current.)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    if int(_version(conn)) >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(_version(conn))  # under the lock: another process may have migrated
        if version < 2:
            log.warning("Upgrading the store to schema 2: building paired index rows")
            n = build_pairs(conn)
            log.warning("Schema 2: %d paired index rows built", n)
        if version < 3:
            conn.execute("DROP INDEX IF EXISTS idx_reference_url")
            conn.execute(URL_INDEX)
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
