"""Search criteria -> SQL over the index tables. Values enter only as placeholders.

Every criterion compiles two ways: as a *driver*, a `SELECT pk ...` of the matching resources read
from an index in one range scan, and as a *probe*, a per-row test on the resource row aliased
`alias` (an EXISTS on the index table's pk index). A query materialises one driver, the one that
selects least (measured with a bounded count when there is a choice), and probes the rest on its
rows: ANDing materialised sets would read every row of a broad criterion such as a date range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.fhir.paired_index import PAIRED_DATE, PAIRED_REFERENCES, PAIRED_TOKENS
from fhir_server.search.query import (
    ChainCriterion,
    Clause,
    CompartmentCriterion,
    CompositeCriterion,
    Criterion,
    DateCriterion,
    HasCriterion,
    IdCriterion,
    LastUpdatedCriterion,
    ListCriterion,
    MissingCriterion,
    NumberCriterion,
    Prefix,
    QuantityCriterion,
    ReferenceCriterion,
    StringCriterion,
    TextCriterion,
    TokenCriterion,
    TokenSetCriterion,
    UriCriterion,
)

Fragment = tuple[str, list[object]]

TABLE_FOR_TYPE = {
    "token": "idx_token",
    "string": "idx_string",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "reference": "idx_reference",
    "uri": "idx_uri",
    "composite": "idx_composite",
}
# Highest code point: the exclusive upper bound of a prefix range on TEXT.
_TOP = "\U0010ffff"


def types_sql(types: tuple[str, ...], column: str = "type") -> Fragment:
    if len(types) == 1:
        return f"{column} = ?", [types[0]]
    if not types:
        return "1", []
    return f"{column} IN ({','.join('?' * len(types))})", list(types)


def fts_query(field: str, text: str) -> str:
    """FHIR `_text`/`_content` text as an FTS5 query on one column: words are ANDed and
    prefix-matched, `OR` between words is honoured, every word is quoted (no FTS syntax leaks)."""
    groups: list[list[str]] = [[]]
    for word in text.split():
        if word == "OR":
            groups.append([])
        else:
            groups[-1].append('"' + word.replace('"', '""') + '"*')
    exprs = ["(" + " AND ".join(g) + ")" for g in groups if g]
    return f"{field} : (" + " OR ".join(exprs or ['""']) + ")"


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def range_sql(prefix: Prefix, lo_col: str, hi_col: str, low: object, high: object) -> Fragment:
    """FHIR's range comparison: stored [lo_col, hi_col) against the searched [low, high)."""
    match prefix:
        case "eq":  # the redundant `lo < high` bounds an index range scan on the low column
            return f"({lo_col} >= ? AND {lo_col} < ? AND {hi_col} <= ?)", [low, high, high]
        case "ne":
            return f"({lo_col} < ? OR {hi_col} > ?)", [low, high]
        case "gt":
            return f"{hi_col} > ?", [high]
        case "lt":
            return f"{lo_col} < ?", [low]
        case "ge":  # both branches imply `hi > low`, which an index on hi can serve
            return (
                f"({hi_col} > ? AND ({hi_col} > ? OR ({lo_col} >= ? AND {hi_col} <= ?)))",
                [low, high, low, high],
            )
        case "le":  # both branches imply `lo < high`
            return (
                f"({lo_col} < ? AND ({lo_col} < ? OR ({lo_col} >= ? AND {hi_col} <= ?)))",
                [high, low, low, high],
            )
        case "sa":
            return f"{lo_col} >= ?", [high]
        case "eb":
            return f"{hi_col} <= ?", [low]
        case "ap":
            return f"({lo_col} < ? AND {hi_col} > ?)", [high, low]
    raise AssertionError(prefix)


def value_sql(prefix: Prefix, col: str, value: float, low: float, high: float) -> Fragment:
    """A stored point value against a searched value with an implicit precision range."""
    match prefix:
        case "eq" | "ap":
            return f"({col} >= ? AND {col} < ?)", [low, high]
        case "ne":
            return f"({col} < ? OR {col} >= ?)", [low, high]
        case "gt":
            return f"{col} > ?", [value]
        case "lt":
            return f"{col} < ?", [value]
        case "sa":  # starts after the search value's range (R4 prefix table, range column)
            return f"{col} >= ?", [high]
        case "eb":  # ends before it
            return f"{col} < ?", [low]
        case "ge":
            return f"{col} >= ?", [value]
        case "le":
            return f"{col} <= ?", [value]
    raise AssertionError(prefix)


@dataclass(frozen=True)
class Cond:
    """A criterion (or an OR of criteria) both ways; `driver` is None when it cannot drive (NOT)."""

    probe: Fragment
    driver: Fragment | None
    rank: int  # a static guess of selectivity, lower is narrower; ties broken by measurement
    streams: bool = False  # the driver's index yields its rows in pk order
    # For a paired driver: its condition on idx_pair, whose rows also carry the date to sort on.
    pair_rows: Fragment | None = None
    # The driver reads index rows only, which exist for current, undeleted resources alone: with
    # no probes, its pks need no check against the resources table.
    live_only: bool = False


# Counts the rows of a driver up to a bound; used to pick the narrowest driver.
Estimator = Callable[[Fragment], int]
_RANK = {
    "id": 0,
    "reference": 1,
    "list": 1,
    "token": 2,
    "composite": 2,
    "string": 3,
    "uri": 3,
    "text": 4,
    "quantity": 5,
    "number": 5,
    "date": 6,
    "updated": 7,
}


def _or(conds: list[Cond]) -> Cond:
    if len(conds) == 1:
        return conds[0]
    probe = (
        "(" + " OR ".join(c.probe[0] for c in conds) + ")",
        [p for c in conds for p in c.probe[1]],
    )
    driver: Fragment | None = None
    if all(c.driver is not None for c in conds):
        parts = [c.driver for c in conds if c.driver is not None]
        driver = (" UNION ".join(d[0] for d in parts), [p for d in parts for p in d[1]])
    return Cond(probe, driver, max(c.rank for c in conds) + 1)


# A measured driver yielding fewer rows than this is taken without measuring the others.
_NARROW_ENOUGH = 100


class CriteriaCompiler:
    """Compiles criteria for resources of `types` held in the row alias `alias`."""

    def __init__(
        self,
        types: tuple[str, ...],
        alias: str = "r",
        depth: int = 0,
        estimate: Estimator | None = None,
        bound: int = 2000,
    ) -> None:
        self.types = types
        self.alias = alias
        self.depth = depth
        self.estimate = estimate
        self.bound = bound  # the estimator counts up to this many rows

    def plan(
        self, clauses: tuple[Clause, ...], ordered: bool = False
    ) -> tuple[Cond | None, Fragment]:
        """(the clause to drive from, or None; the probes of all the other clauses).

        `ordered`: only the first rows in pk order are wanted (default sort, no total), so a
        broad driver that cannot stream is worse than scanning resources in order with probes.
        """
        conds = [self.clause(c) for c in clauses]
        paired = self._paired(clauses)
        if paired is not None:
            pair, consumed = paired
            conds = [pair, *(c for i, c in enumerate(conds) if i not in consumed)]
        drivable = sorted(
            (i for i, c in enumerate(conds) if c.driver is not None),
            key=lambda i: (conds[i].rank, i),
        )[:4]
        chosen: int | None = drivable[0] if drivable else None
        needs_measure = len(drivable) > 1 or (
            ordered and drivable and not conds[drivable[0]].streams
        )
        if needs_measure and self.estimate is not None:
            sizes: dict[int, int] = {}
            for i in drivable:  # in rank order; a driver this narrow cannot be beaten by much
                sizes[i] = self.estimate(conds[i].driver)  # type: ignore[arg-type]
                if sizes[i] < _NARROW_ENOUGH or (
                    conds[i].pair_rows is not None and sizes[i] < self.bound
                ):
                    break  # (a pair is already the intersection of two criteria)
            drivable = list(sizes)
            narrow = [i for i in drivable if sizes[i] < self.bound]
            if narrow:
                chosen = min(narrow, key=lambda i: (sizes[i], conds[i].rank, i))
            elif ordered:
                streaming = [i for i in drivable if conds[i].streams]
                chosen = streaming[0] if streaming else None
        probes = [c.probe for i, c in enumerate(conds) if i != chosen]
        probe = (" AND ".join(p[0] for p in probes) or "1", [x for p in probes for x in p[1]])
        return (conds[chosen] if chosen is not None else None), probe

    def _paired(self, clauses: tuple[Clause, ...]) -> tuple[Cond, set[int]] | None:
        """A reference clause with a token clause and/or date clauses as one driver on idx_pair
        (see fhir/paired_index.py): (that Cond, the clauses it replaces). The date clauses stay
        as probes too: a resource with several dates may satisfy them with different values."""
        single = [cl.criteria[0] if len(cl.criteria) == 1 else None for cl in clauses]
        ref_i = tok_i = None
        date_is: list[int] = []
        for i, c in enumerate(single):
            match c:
                case ReferenceCriterion(param=p, url=None, target_id=str()) if (
                    ref_i is None and p in PAIRED_REFERENCES
                ):
                    ref_i = i
                case ChainCriterion(param=p) if ref_i is None and p in PAIRED_REFERENCES:
                    ref_i = i
                case TokenCriterion(param=p, code=str(), text=None, negate=False) if (
                    tok_i is None and p in PAIRED_TOKENS
                ):
                    tok_i = i
                case DateCriterion(param=p) if p == PAIRED_DATE:
                    date_is.append(i)
        if ref_i is None or (tok_i is None and not date_is):
            return None
        ref = single[ref_i]
        tsql, tparams = types_sql(self.types)
        where = [tsql, "ref_param = ?"]
        params: list[object] = [*tparams]
        if isinstance(ref, ChainCriterion):  # the ids of the chain's matches, resolved first
            sub, sub_params = self._nested(ref.target_types, ref.inner, "c", "id")
            rtypes, rparams = types_sql(ref.target_types, "target_type")
            where += [f"target_id IN ({sub})", rtypes]
            params += [ref.param, *sub_params, *rparams]
        else:
            assert isinstance(ref, ReferenceCriterion)
            where.append("target_id = ?")
            params += [ref.param, ref.target_id]
            if ref.target_type is not None:
                where.append("target_type = ?")
                params.append(ref.target_type)
        consumed = {ref_i}
        tok = single[tok_i] if tok_i is not None else None
        if isinstance(tok, TokenCriterion) and tok_i is not None:
            consumed.add(tok_i)
            where += ["param = ?", "code = ?"]
            params += [tok.param, tok.code]
            if tok.system is not None and not tok.any_system:
                where.append("system = ?")
                params.append(tok.system)
            elif not tok.any_system:
                where.append("system IS NULL")
        else:
            where += ["param = ?", "code IS NULL"]
            params.append(PAIRED_DATE)
        dates = [d for d in (single[i] for i in date_is) if isinstance(d, DateCriterion)]
        # A lower bound first: its `high > ?` is a range on the key index (after code).
        dates.sort(key=lambda d: d.prefix not in ("ge", "gt", "sa", "eq", "ap"))
        ranges = [range_sql(d.prefix, "low", "high", d.low, d.high) for d in dates]
        if ranges:
            # Every condition on one row, except for a resource with several dates (`multi`),
            # whose values may meet them separately: the first on one of its rows is enough
            # there (the date clauses are probed again on each resource).
            where.append(ranges[0][0])
            params += ranges[0][1]
            if len(ranges) > 1:
                where.append("(multi = 1 OR (" + " AND ".join(r[0] for r in ranges[1:]) + "))")
                params += [x for r in ranges[1:] for x in r[1]]
        rows: Fragment = (" AND ".join(where), params)
        driver: Fragment = (f"SELECT pk FROM idx_pair WHERE {rows[0]}", params)
        probes = [self.clause(clauses[i]).probe for i in sorted(consumed)]
        probe: Fragment = (
            " AND ".join(p[0] for p in probes),
            [x for p in probes for x in p[1]],
        )
        return Cond(probe, driver, 0, pair_rows=rows, live_only=True), consumed

    def where(self, clauses: tuple[Clause, ...]) -> Fragment:
        """One boolean expression on the row alias: the driver as `pk IN (...)`, then the probes."""
        driver, probe = self.plan(clauses)
        if driver is None or driver.driver is None:
            return probe
        sql, params = driver.driver
        return f"{self.alias}.pk IN ({sql}) AND {probe[0]}", [*params, *probe[1]]

    def clause(self, clause: Clause) -> Cond:
        return _or([self.criterion(c) for c in clause.criteria])

    def _index(
        self,
        table: str,
        param: str,
        cond: str,
        params: list[object],
        rank: str,
        negate: bool = False,
        streams: bool = False,
    ) -> Cond:
        tsql, tparams = types_sql(self.types)
        probe_sql = (
            f"{'NOT ' if negate else ''}EXISTS (SELECT 1 FROM {table} x "
            f"WHERE x.pk = {self.alias}.pk AND x.param = ? AND {cond})"
        )
        probe: Fragment = (probe_sql, [param, *params])
        if negate:
            return Cond(probe, None, 99)
        driver: Fragment = (
            f"SELECT pk FROM {table} WHERE {tsql} AND param = ? AND {cond}",
            [*tparams, param, *params],
        )
        return Cond(probe, driver, _RANK[rank], streams, live_only=True)

    def _resource_cond(self, cond_on: Callable[[str], Fragment], rank: str) -> Cond:
        """A condition on the resource row itself (id, lastUpdated)."""
        probe = cond_on(self.alias)
        tsql, tparams = types_sql(self.types, "d.type")
        inner = cond_on("d")
        driver: Fragment = (
            f"SELECT d.pk FROM resources d WHERE {tsql} AND d.deleted = 0 AND {inner[0]}",
            [*tparams, *inner[1]],
        )
        return Cond(probe, driver, _RANK[rank])

    def criterion(self, c: Criterion) -> Cond:
        match c:
            case TokenCriterion():
                return self._token(c)
            case StringCriterion(param=p, value=v, mode=mode):
                if mode == "exact":
                    return self._index("idx_string", p, "exact = ?", [v], "string")
                if mode == "contains":
                    like = f"%{like_escape(v)}%"
                    return self._index("idx_string", p, "norm LIKE ? ESCAPE '\\'", [like], "text")
                return self._index(
                    "idx_string", p, "norm >= ? AND norm < ?", [v, v + _TOP], "string"
                )
            case DateCriterion(param=p, prefix=pre, low=lo, high=hi):
                cond, params = range_sql(pre, "low", "high", lo, hi)
                return self._index("idx_date", p, cond, params, "date")
            case NumberCriterion(param=p, prefix=pre, value=v, low=lo, high=hi):
                cond, params = value_sql(pre, "value", v, lo, hi)
                return self._index("idx_number", p, cond, params, "number")
            case QuantityCriterion():
                return self._quantity(c)
            case ReferenceCriterion():
                return self._reference(c)
            case UriCriterion(param=p, uri=u, mode=mode):
                if mode == "below":
                    return self._index("idx_uri", p, "uri >= ? AND uri < ?", [u, u + _TOP], "uri")
                if mode == "above":
                    return self._index("idx_uri", p, "? LIKE (uri || '%')", [u], "text")
                return self._index("idx_uri", p, "uri = ?", [u], "uri", streams=True)
            case MissingCriterion(param=p, param_type=t, missing=missing):
                return self._index(TABLE_FOR_TYPE[t], p, "1", [], "date", negate=missing)
            case IdCriterion(ids=ids, negate=negate):
                marks = ",".join("?" * len(ids))
                if negate:
                    return Cond((f"{self.alias}.id NOT IN ({marks})", list(ids)), None, 99)
                return self._resource_cond(lambda a: (f"{a}.id IN ({marks})", list(ids)), "id")
            case LastUpdatedCriterion(prefix=pre, low=lo, high=hi):
                return self._resource_cond(
                    lambda a: range_sql(
                        pre, f"{a}.last_updated", f"({a}.last_updated + 1)", lo, hi
                    ),
                    "updated",
                )
            case ChainCriterion():
                return self._chain(c)
            case HasCriterion():
                return self._has(c)
            case CompositeCriterion():
                return self._composite(c)
            case TokenSetCriterion():
                return self._token_set(c)
            case TextCriterion(field=f, query=q):
                fts = "SELECT rowid AS pk FROM fts WHERE fts MATCH ?"  # a driver yields `pk`
                return Cond(
                    (f"{self.alias}.pk IN ({fts})", [fts_query(f, q)]),
                    (fts, [fts_query(f, q)]),
                    _RANK["text"],
                )
            case ListCriterion(list_id=list_id):
                return self._list(list_id)
            case CompartmentCriterion():
                return self._compartment(c)
        raise AssertionError(f"unsupported criterion {c!r}")

    def _compartment(self, c: CompartmentCriterion) -> Cond:
        """Rows of idx_reference pointing at the compartment's resource from one of the member
        parameters of the referring resource's type (index idx_reference_any)."""
        members: list[str] = []
        params: list[object] = [c.compartment_id, c.compartment_type]
        for rtype, names in c.members:
            members.append(f"(x.type = ? AND x.param IN ({','.join('?' * len(names))}))")
            params += [rtype, *names]
        cond = "x.target_id = ? AND x.target_type = ? AND (" + " OR ".join(members or ["0"]) + ")"
        probe: Fragment = (
            f"EXISTS (SELECT 1 FROM idx_reference x WHERE x.pk = {self.alias}.pk AND {cond})",
            params,
        )
        driver: Fragment = (f"SELECT x.pk AS pk FROM idx_reference x WHERE {cond}", params)
        return Cond(probe, driver, _RANK["reference"])

    def _list(self, list_id: str) -> Cond:
        items = (
            "SELECT li.target_type, li.target_id FROM idx_reference li WHERE li.type = 'List' "
            "AND li.param = 'item' AND li.pk = "
            "(SELECT pk FROM resources WHERE type = 'List' AND id = ? AND deleted = 0)"
        )
        a = self.alias
        probe: Fragment = (f"({a}.type, {a}.id) IN ({items})", [list_id])
        tsql, tparams = types_sql(self.types, "d.type")
        driver: Fragment = (
            f"SELECT d.pk FROM resources d WHERE {tsql} AND (d.type, d.id) IN ({items})",
            [*tparams, list_id],
        )
        return Cond(probe, driver, _RANK["list"])

    def _token(self, c: TokenCriterion) -> Cond:
        params: list[object]
        if c.text is not None:
            cond, params = "text LIKE ? ESCAPE '\\'", [f"{like_escape(c.text)}%"]
        elif c.code is not None and c.any_system:
            cond, params = "code = ?", [c.code]
        elif c.code is not None and c.system is not None:
            cond, params = "code = ? AND system = ?", [c.code, c.system]
        elif c.code is not None:
            cond, params = "code = ? AND system IS NULL", [c.code]
        else:
            cond, params = "system = ?", [c.system]
        rank = "text" if c.text is not None or c.code is None else "token"
        streams = c.text is None and c.code is not None
        return self._index("idx_token", c.param, cond, params, rank, c.negate, streams)

    def _token_set(self, c: TokenSetCriterion) -> Cond:
        ors: list[str] = []
        params: list[object] = []
        with_system = [(s, code) for s, code in c.codes if s is not None]
        if with_system:
            codes = sorted({code for _, code in with_system})
            pairs = sorted({f"{s}|{code}" for s, code in with_system})
            ors.append(
                f"(code IN ({','.join('?' * len(codes))}) "
                f"AND system || '|' || code IN ({','.join('?' * len(pairs))}))"
            )
            params += [*codes, *pairs]
        bare = sorted({code for s, code in c.codes if s is None})
        if bare:
            ors.append(f"code IN ({','.join('?' * len(bare))})")
            params += bare
        if c.systems:
            ors.append(f"system IN ({','.join('?' * len(c.systems))})")
            params += list(c.systems)
        cond = "(" + " OR ".join(ors or ["0"]) + ")"
        return self._index("idx_token", c.param, cond, params, "token", negate=c.negate)

    def _quantity(self, c: QuantityCriterion) -> Cond:
        cond, params = value_sql(c.prefix, "value", c.value, c.low, c.high)
        if c.system is not None and c.code is not None:
            cond += " AND system = ? AND code = ?"
            params += [c.system, c.code]
        elif c.code is not None:
            cond += " AND (code = ? OR unit = ?)"
            params += [c.code, c.code]
        return self._index("idx_quantity", c.param, cond, params, "quantity")

    def _reference(self, c: ReferenceCriterion) -> Cond:
        # Both indexes continue with pk after the value: one reference's rows come in pk order.
        if c.url is not None:
            return self._index(
                "idx_reference", c.param, "url = ?", [c.url], "reference", streams=True
            )
        if c.target_type is not None:
            return self._index(
                "idx_reference",
                c.param,
                "target_id = ? AND target_type = ?",
                [c.target_id, c.target_type],
                "reference",
                streams=True,
            )
        return self._index(
            "idx_reference", c.param, "target_id = ?", [c.target_id], "reference", streams=True
        )

    def _nested(
        self, types: tuple[str, ...], clauses: tuple[Clause, ...], prefix: str, column: str
    ) -> Fragment:
        """`SELECT alias.column FROM resources alias WHERE ...` for a chain's or _has's inner query."""
        alias = f"{prefix}{self.depth + 1}"
        inner = CriteriaCompiler(types, alias, self.depth + 1, self.estimate)
        where, params = inner.where(clauses)
        tsql, tparams = types_sql(types, f"{alias}.type")
        sql = (
            f"SELECT {alias}.{column} FROM resources {alias} WHERE {tsql} "
            f"AND {alias}.deleted = 0 AND {where}"
        )
        return sql, [*tparams, *params]

    def _chain(self, c: ChainCriterion) -> Cond:
        sub, sub_params = self._nested(c.target_types, c.inner, "c", "id")
        rtypes, rparams = types_sql(c.target_types, "target_type")
        cond = f"{rtypes} AND target_id IN ({sub})"
        return self._index("idx_reference", c.param, cond, [*rparams, *sub_params], "reference")

    def _has(self, c: HasCriterion) -> Cond:
        """A per-row test only: does some `source_type` resource pointing here match `inner`?

        Correlated all the way down, so it costs the references to this row, not the size of the
        inner search (which for `_has:Observation:patient:code=...` can be most of the store).
        """
        alias = f"h{self.depth + 1}"
        inner = CriteriaCompiler((c.source_type,), alias, self.depth + 1)
        probes = [inner.clause(clause).probe for clause in c.inner]  # every clause: no driver
        inner_probe = (" AND ".join(p[0] for p in probes) or "1", [x for p in probes for x in p[1]])
        a = self.alias
        sql = (
            f"EXISTS (SELECT 1 FROM idx_reference ref JOIN resources {alias} ON {alias}.pk = ref.pk "
            f"WHERE ref.type = ? AND ref.param = ? AND ref.target_id = {a}.id "
            f"AND ref.target_type = {a}.type AND {alias}.deleted = 0 AND {inner_probe[0]})"
        )
        return Cond((sql, [c.source_type, c.param, *inner_probe[1]]), None, _RANK["reference"])

    def _composite(self, c: CompositeCriterion) -> Cond:
        first, second = c.components
        conds: list[str] = []
        params: list[object] = []
        if isinstance(first, TokenCriterion) and first.code is not None:
            conds.append("code1 = ?")
            params.append(first.code)
            if not first.any_system:
                conds.append("system1 = ?" if first.system is not None else "system1 IS NULL")
                if first.system is not None:
                    params.append(first.system)
        match second:
            case TokenCriterion(system=s, code=code, any_system=any_s):
                conds.append("code2 = ?")
                params.append(code)
                if not any_s and s is not None:
                    conds.append("system2 = ?")
                    params.append(s)
            case QuantityCriterion() | NumberCriterion():
                cond, p = value_sql(second.prefix, "value2", second.value, second.low, second.high)
                conds.append(cond)
                params.extend(p)
                if isinstance(second, QuantityCriterion) and second.code is not None:
                    conds.append("code2 = ?")
                    params.append(second.code)
                    if second.system is not None:
                        conds.append("system2 = ?")
                        params.append(second.system)
            case DateCriterion(prefix=pre, low=lo, high=hi):
                cond, p = range_sql(pre, "low2", "high2", lo, hi)
                conds.append(cond)
                params.extend(p)
            case StringCriterion(value=v):
                conds.append("str2 >= ? AND str2 < ?")
                params.extend([v, v + _TOP])
            case _:
                raise AssertionError(f"unsupported composite component {second!r}")
        return self._index(
            "idx_composite", c.param, " AND ".join(conds) or "1", params, "composite"
        )
