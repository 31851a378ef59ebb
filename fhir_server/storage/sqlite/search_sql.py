"""Search and history on SQLite: assembly of the filtered, sorted, keyset-paged query."""

from __future__ import annotations

import sqlite3
from typing import Any

from fhir_server.fhir.index_values import DATE_MAX, DATE_MIN
from fhir_server.fhir.paired_index import PAIRED_DATE
from fhir_server.search.query import Include, SearchQuery, SortKey
from fhir_server.storage.base import (
    HistoryEntry,
    HistoryPage,
    HistoryQuery,
    SearchPage,
    StoredResource,
)
from fhir_server.storage.sqlite.sql_criteria import (
    Cond,
    CriteriaCompiler,
    Estimator,
    Fragment,
    types_sql,
)

_SELECT = "SELECT r.pk, r.type, r.id, r.version, r.last_updated, h.body"
_FROM = "FROM resources r JOIN history h ON h.seq = r.seq"
_FROM_HISTORY = "JOIN history h ON h.seq = r.seq"
_TOP_TEXT = "\U0010ffff"
# How a sort key reads its value from the index tables: (table, column for asc, for desc).
_SORT_SOURCES: dict[str, tuple[str, str, str, object, object]] = {
    # type: (table, asc expr, desc expr, sentinel for missing when asc, when desc)
    "date": ("idx_date", "MIN(low)", "MAX(high)", DATE_MAX, DATE_MIN),
    "string": ("idx_string", "MIN(norm)", "MAX(norm)", _TOP_TEXT, ""),
    "token": ("idx_token", "MIN(code)", "MAX(code)", _TOP_TEXT, ""),
    "number": ("idx_number", "MIN(value)", "MAX(value)", 1e308, -1e308),
    "quantity": ("idx_quantity", "MIN(value)", "MAX(value)", 1e308, -1e308),
    "reference": ("idx_reference", "MIN(target_id)", "MAX(target_id)", _TOP_TEXT, ""),
    "uri": ("idx_uri", "MIN(uri)", "MAX(uri)", _TOP_TEXT, ""),
}


def _sort_expr(key: SortKey) -> Fragment:
    if key.param == "_id":
        return "r.id", []
    if key.param == "_lastUpdated":
        return "r.last_updated", []
    table, asc, desc, miss_asc, miss_desc = _SORT_SOURCES[key.param_type]
    agg = desc if key.descending else asc
    missing = miss_desc if key.descending else miss_asc
    sql = f"COALESCE((SELECT {agg} FROM {table} s WHERE s.pk = r.pk AND s.param = ?), ?)"
    return sql, [key.param, missing]


def _keyset(
    n_keys: int, descending: list[bool], after: tuple[object, ...], pk_descending: bool = False
) -> Fragment:
    """Rows strictly after `after` in the order (s0, s1, ..., pk): an OR of prefix equalities."""
    cols = [f"s{i}" for i in range(n_keys)] + ["pk"]
    dirs = [*descending, pk_descending]
    ors: list[str] = []
    params: list[object] = []
    for i in range(len(cols)):
        parts = [f"{cols[j]} = ?" for j in range(i)]
        parts.append(f"{cols[i]} {'<' if dirs[i] else '>'} ?")
        ors.append("(" + " AND ".join(parts) + ")")
        params.extend(after[: i + 1])
    return "(" + " OR ".join(ors) + ")", params


ESTIMATE_BOUND = 2000


def estimator(conn: sqlite3.Connection) -> Estimator:
    """How many rows a driver yields, counted up to a bound: enough to tell narrow from broad."""

    def estimate(driver: Fragment) -> int:
        sql = f"SELECT count(*) FROM ({driver[0]} LIMIT {ESTIMATE_BOUND})"
        return int(conn.execute(sql, driver[1]).fetchone()[0])

    return estimate


def _to_stored(row: tuple[Any, ...]) -> StoredResource:
    return StoredResource(row[1], row[2], row[3], row[4], False, bytes(row[5]))


def _streamed(
    driver: Fragment, where: str, params: list[object], query: SearchQuery, backwards: bool
) -> Fragment:
    """Default order with a driver whose index is in pk order: read pks from the index in order
    and stop after a page, instead of materialising every match first."""
    cursor = query.before if backwards else query.after
    keyset = ""
    keyset_params: list[object] = []
    if cursor is not None:
        keyset = f" AND x.pk {'<' if backwards else '>'} ?"
        keyset_params = [cursor[-1]]
    direction = "DESC" if backwards else "ASC"
    pks = (
        f"SELECT DISTINCT x.pk AS pk FROM ({driver[0]}) x JOIN resources r ON r.pk = x.pk "
        f"WHERE {where}{keyset} ORDER BY x.pk {direction} LIMIT ?"
    )
    sql = f"{_SELECT} FROM ({pks}) d JOIN resources r ON r.pk = d.pk {_FROM_HISTORY} ORDER BY r.pk {direction}"
    return sql, [*driver[1], *params, *keyset_params, query.count + 1]


def _pair_sorted_rows(cond: Cond | None, query: SearchQuery) -> Fragment | None:
    """`pk, s0` of a paired driver sorted on its own date: the pair rows carry the resource's
    date values, so no per-row lookup is needed (resources with several dates excepted)."""
    if cond is None or cond.pair_rows is None or len(query.sort) != 1:
        return None
    key = query.sort[0]
    if key.param != PAIRED_DATE or key.param_type != "date":
        return None
    agg, sentinel = ("MAX(high)", DATE_MIN) if key.descending else ("MIN(low)", DATE_MAX)
    exact, exact_params = _sort_expr(key)
    exact = exact.replace("s.pk = r.pk", "s.pk = x.pk")
    sql = (
        f"SELECT x.pk AS pk, CASE WHEN MAX(x.multi) = 1 THEN {exact} "
        f"ELSE COALESCE({agg}, ?) END AS s0 FROM idx_pair x WHERE {cond.pair_rows[0]} "
        "GROUP BY x.pk"
    )
    return sql, [*exact_params, sentinel, *cond.pair_rows[1]]


def _sorted(
    driver: Cond | None,
    where: str,
    params: list[object],
    query: SearchQuery,
    backwards: bool,
    snapshot: int,
    bare: bool,
) -> Fragment:
    """`bare`: the driver alone decides (index rows of live resources, no probes), so the page is
    cut from its pks without visiting a resources row per candidate."""
    # Two steps: order and cut the page on (pk, sort keys) alone, then join the page's bodies,
    # so a broad match never drags every body through the sorter.
    paired = _pair_sorted_rows(driver, query)
    inner_params: list[object]
    if paired is not None and bare:
        inner = f"SELECT p.pk AS pk, p.s0 AS s0 FROM ({paired[0]}) p WHERE p.pk <= ?"
        inner_params = [*paired[1], snapshot]
    elif paired is not None:
        inner = (
            f"SELECT p.pk AS pk, p.s0 AS s0 FROM ({paired[0]}) p "
            f"JOIN resources r ON r.pk = p.pk WHERE {where}"
        )
        inner_params = [*paired[1], *params]
    elif not query.sort and bare and driver is not None and driver.driver is not None:
        inner = f"SELECT DISTINCT x.pk AS pk FROM ({driver.driver[0]}) x WHERE x.pk <= ?"
        inner_params = [*driver.driver[1], snapshot]
    else:
        if driver is not None and driver.driver is not None:
            where = f"r.pk IN ({driver.driver[0]}) AND {where}"
            params = [*driver.driver[1], *params]
        sort_cols: list[str] = []
        inner_params = []
        for i, key in enumerate(query.sort):
            expr, p = _sort_expr(key)
            sort_cols.append(f", {expr} AS s{i}")
            inner_params.extend(p)
        inner = f"SELECT r.pk AS pk{''.join(sort_cols)} FROM resources r WHERE {where}"
        inner_params += params
    outer_where = "1"
    outer_params: list[object] = []
    # A previous page is read in reverse order from its end, then turned around.
    descending = [k.descending != backwards for k in query.sort]
    cursor = query.before if backwards else query.after
    if cursor is not None:
        outer_where, outer_params = _keyset(len(query.sort), descending, cursor, backwards)
    pk_dir = "DESC" if backwards else "ASC"
    order = ", ".join(
        [f"s{i} {'DESC' if d else 'ASC'}" for i, d in enumerate(descending)] + [f"pk {pk_dir}"]
    )
    page = f"SELECT * FROM ({inner}) WHERE {outer_where} ORDER BY {order} LIMIT ?"
    keys = "".join(f", d.s{i} AS s{i}" for i in range(len(query.sort)))
    sql = (
        f"SELECT d.pk AS pk, r.type, r.id, r.version, r.last_updated, h.body{keys} "
        f"FROM ({page}) d JOIN resources r ON r.pk = d.pk {_FROM_HISTORY} ORDER BY {order}"
    )
    return sql, [*inner_params, *outer_params, query.count + 1]


def _count(
    conn: sqlite3.Connection,
    driver: Cond | None,
    where: str,
    params: list[object],
    probe_free: bool,
    snapshot: int,
) -> int:
    if driver is not None and driver.driver is not None and probe_free:
        sql = f"SELECT count(DISTINCT x.pk) FROM ({driver.driver[0]}) x WHERE x.pk <= ?"
        return int(conn.execute(sql, [*driver.driver[1], snapshot]).fetchone()[0])
    if driver is not None and driver.driver is not None:
        where = f"r.pk IN ({driver.driver[0]}) AND {where}"
        params = [*driver.driver[1], *params]
    return int(
        conn.execute(f"SELECT count(*) FROM resources r WHERE {where}", params).fetchone()[0]
    )


def run_search(conn: sqlite3.Connection, query: SearchQuery) -> SearchPage:
    snapshot = query.snapshot
    if snapshot is None:
        snapshot = int(conn.execute("SELECT COALESCE(MAX(pk), 0) FROM resources").fetchone()[0])
    compiler = CriteriaCompiler(
        query.resource_types, estimate=estimator(conn), bound=ESTIMATE_BOUND
    )
    ordered = not query.sort and query.total == "none"
    driver, probe = compiler.plan(query.clauses, ordered)
    tsql, tparams = types_sql(query.resource_types, "r.type")
    where = f"r.deleted = 0 AND {tsql} AND {probe[0]} AND r.pk <= ?"
    params: list[object] = [*tparams, *probe[1], snapshot]
    backwards = query.before is not None
    if not query.sort and driver is not None and driver.driver is not None and driver.streams:
        sql, all_params = _streamed(driver.driver, where, params, query, backwards)
    else:
        bare = driver is not None and driver.live_only and probe[0] == "1"
        sql, all_params = _sorted(driver, where, params, query, backwards, snapshot, bare)
    rows = conn.execute(sql, all_params).fetchall() if query.count > 0 else []

    more = len(rows) > query.count
    rows = rows[: query.count]
    if backwards:
        rows.reverse()
    matches = [_to_stored(r) for r in rows]
    n = len(query.sort)
    next_cursor = prev_cursor = None
    if rows:
        if (more and not backwards) or backwards:
            next_cursor = (*rows[-1][6 : 6 + n], rows[-1][0])
        if (more and backwards) or (not backwards and query.after is not None):
            prev_cursor = (*rows[0][6 : 6 + n], rows[0][0])

    total: int | None = None
    first_page = query.after is None and query.before is None
    if query.total in ("accurate", "estimate") or (first_page and not more and query.count > 0):
        if first_page and not more and query.count > 0:
            total = len(matches)
        else:
            total = _count(conn, driver, where, params, probe[0] == "1", snapshot)
    included = _includes(conn, query.includes, rows) if query.includes and rows else []
    return SearchPage(matches, included, total, next_cursor, snapshot, prev_cursor)


def _includes(
    conn: sqlite3.Connection, includes: tuple[Include, ...], rows: list[Any]
) -> list[StoredResource]:
    seen: set[int] = {r[0] for r in rows}
    frontier: list[tuple[int, str, str]] = [(r[0], r[1], r[2]) for r in rows]
    found: list[StoredResource] = []
    for round_ in range(4):  # :iterate goes a few levels deep; bounded so cycles end
        new_rows: list[Any] = []
        for inc in includes:
            if round_ > 0 and not inc.iterate:
                continue
            new_rows.extend(_include_once(conn, inc, frontier))
        frontier = []
        for row in new_rows:
            if row[0] not in seen:
                seen.add(row[0])
                found.append(_to_stored(row))
                frontier.append((row[0], row[1], row[2]))
        if not frontier:
            break
    return found


def _include_once(
    conn: sqlite3.Connection, inc: Include, frontier: list[tuple[int, str, str]]
) -> list[Any]:
    param_sql, param_params = ("1", []) if inc.param == "*" else ("ref.param = ?", [inc.param])
    target_sql, target_params = (
        ("1", []) if inc.target_type is None else ("ref.target_type = ?", [inc.target_type])
    )
    out: list[Any] = []
    if not inc.reverse:
        pks = [pk for pk, rtype, _ in frontier if rtype == inc.source_type]
        for chunk in _chunks(pks):
            sql = (
                f"{_SELECT} {_FROM} JOIN idx_reference ref ON ref.target_type = r.type "
                f"AND ref.target_id = r.id WHERE ref.pk IN ({','.join('?' * len(chunk))}) "
                f"AND {param_sql} AND {target_sql} AND r.deleted = 0"
            )
            out.extend(conn.execute(sql, [*chunk, *param_params, *target_params]).fetchall())
    else:
        for chunk in _chunks([(t, i) for _, t, i in frontier]):
            ids = [i for _, i in chunk]
            types = sorted({t for t, _ in chunk})
            tsql, tparams = types_sql(tuple(types), "ref.target_type")
            source_sql, source_params = (
                ("1", []) if inc.source_type == "*" else ("ref.type = ?", [inc.source_type])
            )
            sql = (
                f"{_SELECT} {_FROM} JOIN idx_reference ref ON ref.pk = r.pk "
                f"WHERE {source_sql} AND {param_sql} AND {target_sql} AND {tsql} "
                f"AND ref.target_id IN ({','.join('?' * len(ids))}) AND r.deleted = 0"
            )
            params = [*source_params, *param_params, *target_params, *tparams, *ids]
            out.extend(conn.execute(sql, params).fetchall())
    return out


def _chunks(items: list[Any], size: int = 500) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_history(conn: sqlite3.Connection, q: HistoryQuery) -> HistoryPage:
    conds: list[str] = []
    params: list[object] = []
    if q.resource_type is not None:
        conds.append("h.type = ?")
        params.append(q.resource_type)
    if q.id is not None:
        conds.append("h.id = ?")
        params.append(q.id)
    if q.since is not None:
        conds.append("h.last_updated >= ?")
        params.append(q.since)
    if q.at is not None:
        low, high = q.at
        # Versions current at some time in [low, high): written before high, and not replaced
        # by a next version before low.
        conds.append(
            "h.last_updated < ? AND NOT EXISTS (SELECT 1 FROM history n WHERE n.type = h.type "
            "AND n.id = h.id AND n.version = h.version + 1 AND n.last_updated <= ?)"
        )
        params.extend([high, low])
    where = " AND ".join(conds) or "1"
    total = None
    if q.id is not None:  # counting a whole type's or the system's history would cost a scan
        total = int(
            conn.execute(f"SELECT count(*) FROM history h WHERE {where}", params).fetchone()[0]
        )
    page_where = where
    page_params = list(params)
    if q.before_seq is not None:
        page_where += " AND h.seq < ?"
        page_params.append(q.before_seq)
    rows = conn.execute(
        "SELECT h.seq, h.type, h.id, h.version, h.last_updated, h.method, h.body FROM history h "
        f"WHERE {page_where} ORDER BY h.seq DESC LIMIT ?",
        [*page_params, q.count + 1],
    ).fetchall()
    more = len(rows) > q.count
    rows = rows[: q.count]
    entries = [
        HistoryEntry(
            StoredResource(r[1], r[2], r[3], r[4], r[5] == "DELETE", bytes(r[6])),
            r[5],
        )
        for r in rows
    ]
    return HistoryPage(entries, rows[-1][0] if more and rows else None, total)
