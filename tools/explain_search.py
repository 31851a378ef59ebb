"""Print the SQL and SQLite query plan behind FHIR searches (evidence that they run on indexes).

Usage: python tools/explain_search.py DATA_DIR 'Observation?patient=p1&code=8867-4' ...
Every statement a search runs (the planner's bounded counts included) is shown with its time and
`EXPLAIN QUERY PLAN`; a plan line that SCANs an index table or the resources table is marked.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.fhir.resource_types import resource_types
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.search.parse import SearchContext, parse_search
from fhir_server.storage.sqlite import search_sql


class _Recorder:
    """A connection stand-in that runs each statement and keeps (sql, params, ms)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.log: list[tuple[str, list[Any], float]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        start = time.perf_counter()
        rows = self.conn.execute(sql, params).fetchall()
        self.log.append((sql, list(params), (time.perf_counter() - start) * 1000))
        cur = self.conn.execute("SELECT 1 WHERE 0")  # an empty cursor to hand the rows back
        return _Rows(rows, cur)  # type: ignore[return-value]


class _Rows:
    def __init__(self, rows: list[Any], cur: sqlite3.Cursor) -> None:
        self._rows = rows

    def fetchall(self) -> list[Any]:
        return self._rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None


def explain(conn: sqlite3.Connection, ctx: SearchContext, query: str) -> list[str]:
    path, _, qs = query.partition("?")
    parsed = parse_search(ctx, (path,), parse_qsl(qs), default_count=20, max_count=1000)
    rec = _Recorder(conn)
    search_sql.run_search(rec, parsed.query)  # type: ignore[arg-type]
    out = [f"### `{query}`", ""]
    for sql, params, ms in rec.log:
        out.append(f"- {ms:.2f} ms: `{sql[:160]}{'…' if len(sql) > 160 else ''}`")
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall():
            detail = str(row[3])
            # "SCAN d" is the page of pks already selected; "(subquery-N)" a bounded count.
            scanned = detail.split()[1] if detail.startswith("SCAN ") else ""
            is_table_scan = scanned not in ("", "d") and not scanned.startswith("(subquery")
            flag = " **(scan)**" if is_table_scan else ""
            out.append(f"    - {detail}{flag}")
    out.append("")
    return out


def search_context() -> SearchContext:
    """How the explained queries are parsed: the default parameters, UTC, every type."""
    return SearchContext(
        SearchParamRegistry.load_default(),
        UTC,
        "http://localhost/fhir",
        False,
        frozenset(resource_types()),
    )


def main(argv: list[str]) -> int:
    data_dir, queries = Path(argv[0]), argv[1:]
    conn = sqlite3.connect(data_dir / "fhir.db")
    ctx = search_context()
    for q in queries:
        print("\n".join(explain(conn, ctx, q)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
