"""Search criteria -> SQL fragments over the index tables. Values enter only as placeholders.

Each fragment is a boolean expression about the resource row aliased `alias` (columns pk, type, id,
last_updated). Index tables are entered through `alias.pk IN (SELECT pk ...)` so that SQLite can
drive the query from the most selective index instead of scanning every resource of the type.
"""

from __future__ import annotations

from fhir_server.search.query import (
    ChainCriterion,
    Clause,
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


def _types_sql(types: tuple[str, ...], column: str = "type") -> Fragment:
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
        case "eq":
            return f"({lo_col} >= ? AND {hi_col} <= ?)", [low, high]
        case "ne":
            return f"({lo_col} < ? OR {hi_col} > ?)", [low, high]
        case "gt":
            return f"{hi_col} > ?", [high]
        case "lt":
            return f"{lo_col} < ?", [low]
        case "ge":
            return f"({hi_col} > ? OR ({lo_col} >= ? AND {hi_col} <= ?))", [high, low, high]
        case "le":
            return f"({lo_col} < ? OR ({lo_col} >= ? AND {hi_col} <= ?))", [low, low, high]
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
        case "gt" | "sa":
            return f"{col} > ?", [value]
        case "lt" | "eb":
            return f"{col} < ?", [value]
        case "ge":
            return f"{col} >= ?", [value]
        case "le":
            return f"{col} <= ?", [value]
    raise AssertionError(prefix)


class CriteriaCompiler:
    """Compiles criteria for resources of `types` held in the row alias `alias`."""

    def __init__(self, types: tuple[str, ...], alias: str = "r", depth: int = 0) -> None:
        self.types = types
        self.alias = alias
        self.depth = depth

    def clauses(self, clauses: tuple[Clause, ...]) -> Fragment:
        parts: list[str] = []
        params: list[object] = []
        for clause in clauses:
            sql, p = self.clause(clause)
            parts.append(sql)
            params.extend(p)
        return (" AND ".join(parts) if parts else "1"), params

    def clause(self, clause: Clause) -> Fragment:
        frags = [self.criterion(c) for c in clause.criteria]
        if len(frags) == 1:
            return frags[0]
        return "(" + " OR ".join(f[0] for f in frags) + ")", [p for f in frags for p in f[1]]

    def _in_index(self, table: str, param: str, cond: str, params: list[object]) -> Fragment:
        tsql, tparams = _types_sql(self.types)
        sql = f"{self.alias}.pk IN (SELECT pk FROM {table} WHERE {tsql} AND param = ? AND {cond})"
        return sql, [*tparams, param, *params]

    def criterion(self, c: Criterion) -> Fragment:
        a = self.alias
        match c:
            case TokenCriterion():
                return self._token(c)
            case StringCriterion(param=p, value=v, mode=mode):
                if mode == "exact":
                    return self._in_index("idx_string", p, "exact = ?", [v])
                if mode == "contains":
                    return self._in_index(
                        "idx_string", p, "norm LIKE ? ESCAPE '\\'", [f"%{like_escape(v)}%"]
                    )
                return self._in_index("idx_string", p, "norm >= ? AND norm < ?", [v, v + _TOP])
            case DateCriterion(param=p, prefix=pre, low=lo, high=hi):
                cond, params = range_sql(pre, "low", "high", lo, hi)
                return self._in_index("idx_date", p, cond, params)
            case NumberCriterion(param=p, prefix=pre, value=v, low=lo, high=hi):
                cond, params = value_sql(pre, "value", v, lo, hi)
                return self._in_index("idx_number", p, cond, params)
            case QuantityCriterion():
                return self._quantity(c)
            case ReferenceCriterion():
                return self._reference(c)
            case UriCriterion(param=p, uri=u, mode=mode):
                if mode == "below":
                    return self._in_index("idx_uri", p, "uri >= ? AND uri < ?", [u, u + _TOP])
                if mode == "above":
                    return self._in_index("idx_uri", p, "? LIKE (uri || '%')", [u])
                return self._in_index("idx_uri", p, "uri = ?", [u])
            case MissingCriterion(param=p, param_type=t, missing=missing):
                tsql, tparams = _types_sql(self.types)
                op = "NOT IN" if missing else "IN"
                table = TABLE_FOR_TYPE[t]
                sql = f"{a}.pk {op} (SELECT pk FROM {table} WHERE {tsql} AND param = ?)"
                return sql, [*tparams, p]
            case IdCriterion(ids=ids):
                return f"{a}.id IN ({','.join('?' * len(ids))})", list(ids)
            case LastUpdatedCriterion(prefix=pre, low=lo, high=hi):
                col = f"{a}.last_updated"
                return range_sql(pre, col, f"({col} + 1)", lo, hi)
            case ChainCriterion():
                return self._chain(c)
            case HasCriterion():
                return self._has(c)
            case CompositeCriterion():
                return self._composite(c)
            case TokenSetCriterion():
                return self._token_set(c)
            case TextCriterion(field=f, query=q):
                return f"{a}.pk IN (SELECT rowid FROM fts WHERE fts MATCH ?)", [fts_query(f, q)]
            case ListCriterion(list_id=list_id):
                sql = (
                    f"{a}.id IN (SELECT li.target_id FROM idx_reference li WHERE li.type = 'List' "
                    f"AND li.param = 'item' AND li.target_type = {a}.type AND li.pk = "
                    "(SELECT pk FROM resources WHERE type = 'List' AND id = ? AND deleted = 0))"
                )
                return sql, [list_id]
        raise AssertionError(f"unsupported criterion {c!r}")

    def _token_set(self, c: TokenSetCriterion) -> Fragment:
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
        if not ors:
            ors.append("0")
        sql, p = self._in_index("idx_token", c.param, "(" + " OR ".join(ors) + ")", params)
        if c.negate:
            sql = sql.replace(" IN (", " NOT IN (", 1)
        return sql, p

    def _token(self, c: TokenCriterion) -> Fragment:
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
        sql, p = self._in_index("idx_token", c.param, cond, params)
        if c.negate:
            sql = sql.replace(" IN (", " NOT IN (", 1)
        return sql, p

    def _quantity(self, c: QuantityCriterion) -> Fragment:
        cond, params = value_sql(c.prefix, "value", c.value, c.low, c.high)
        if c.system is not None and c.code is not None:
            cond += " AND system = ? AND code = ?"
            params += [c.system, c.code]
        elif c.code is not None:
            cond += " AND (code = ? OR unit = ?)"
            params += [c.code, c.code]
        return self._in_index("idx_quantity", c.param, cond, params)

    def _reference(self, c: ReferenceCriterion) -> Fragment:
        if c.url is not None:
            return self._in_index("idx_reference", c.param, "url = ?", [c.url])
        if c.target_type is not None:
            return self._in_index(
                "idx_reference",
                c.param,
                "target_id = ? AND target_type = ?",
                [c.target_id, c.target_type],
            )
        return self._in_index("idx_reference", c.param, "target_id = ?", [c.target_id])

    def _chain(self, c: ChainCriterion) -> Fragment:
        inner_alias = f"c{self.depth + 1}"
        inner = CriteriaCompiler(c.target_types, inner_alias, self.depth + 1)
        inner_sql, inner_params = inner.clauses(c.inner)
        ttypes, tparams = _types_sql(c.target_types, f"{inner_alias}.type")
        sub = (
            f"SELECT {inner_alias}.id FROM resources {inner_alias} WHERE {ttypes} "
            f"AND {inner_alias}.deleted = 0 AND {inner_sql}"
        )
        rtypes, rparams = _types_sql(c.target_types, "target_type")
        cond = f"{rtypes} AND target_id IN ({sub})"
        return self._in_index("idx_reference", c.param, cond, [*rparams, *tparams, *inner_params])

    def _has(self, c: HasCriterion) -> Fragment:
        inner_alias = f"h{self.depth + 1}"
        inner = CriteriaCompiler((c.source_type,), inner_alias, self.depth + 1)
        inner_sql, inner_params = inner.clauses(c.inner)
        a = self.alias
        sql = (
            f"{a}.id IN (SELECT ref.target_id FROM idx_reference ref WHERE ref.type = ? "
            f"AND ref.param = ? AND ref.target_type = {a}.type AND ref.pk IN ("
            f"SELECT {inner_alias}.pk FROM resources {inner_alias} WHERE {inner_alias}.type = ? "
            f"AND {inner_alias}.deleted = 0 AND {inner_sql}))"
        )
        return sql, [c.source_type, c.param, c.source_type, *inner_params]

    def _composite(self, c: CompositeCriterion) -> Fragment:
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
        return self._in_index("idx_composite", c.param, " AND ".join(conds) or "1", params)
