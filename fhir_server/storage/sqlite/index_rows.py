"""Index values -> rows of the SQLite side tables (one INSERT statement per table)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fhir_server.fhir.index_values import (
    CompositeValue,
    DateValue,
    FullTextValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.fhir.paired_index import pair_values

Row = tuple[object, ...]

INSERTS: dict[str, str] = {
    "idx_token": "INSERT INTO idx_token VALUES (?,?,?,?,?,?)",
    "idx_string": "INSERT INTO idx_string VALUES (?,?,?,?,?)",
    "idx_date": "INSERT INTO idx_date VALUES (?,?,?,?,?)",
    "idx_number": "INSERT INTO idx_number VALUES (?,?,?,?)",
    "idx_quantity": "INSERT INTO idx_quantity VALUES (?,?,?,?,?,?,?)",
    "idx_reference": "INSERT INTO idx_reference VALUES (?,?,?,?,?,?)",
    "idx_uri": "INSERT INTO idx_uri VALUES (?,?,?,?)",
    "idx_composite": "INSERT INTO idx_composite VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "idx_pair": "INSERT INTO idx_pair VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "fts": "INSERT INTO fts (rowid, narrative, content) VALUES (?,?,?)",
}


def _composite_row(pk: int, rtype: str, value: CompositeValue) -> Row | None:
    if len(value.components) != 2:
        return None
    first, second = value.components
    if not isinstance(first, TokenValue):
        return None
    system1, code1 = first.system, first.code
    match second:
        case TokenValue(system=s, code=c):
            return (pk, rtype, value.param, system1, code1, s, c, None, None, None, None)
        case QuantityValue(value=v, system=s, code=c):
            return (pk, rtype, value.param, system1, code1, s, c, v, None, None, None)
        case NumberValue(value=v):
            return (pk, rtype, value.param, system1, code1, None, None, v, None, None, None)
        case DateValue(low=lo, high=hi):
            return (pk, rtype, value.param, system1, code1, None, None, None, lo, hi, None)
        case StringValue(norm=n):
            return (pk, rtype, value.param, system1, code1, None, None, None, None, None, n)
        case ReferenceValue(target_type=t, target_id=i, url=u):
            ref = f"{t}/{i}" if t and i else u
            return (pk, rtype, value.param, system1, code1, None, ref, None, None, None, None)
        case UriValue(uri=u):
            return (pk, rtype, value.param, system1, code1, None, u, None, None, None, None)
    return None


def pair_rows(pk: int, rtype: str, values: Iterable[IndexValue]) -> list[Row]:
    return [
        (
            pk,
            rtype,
            p.ref_param,
            p.target_type,
            p.target_id,
            p.param,
            p.system,
            p.code,
            p.low,
            p.high,
            int(p.multi_date),
        )
        for p in pair_values(values)
    ]


def token_rows(pk: int, rtype: str, tokens: list[TokenValue]) -> list[Row]:
    """One row per coded value; the texts (`:text`: CodeableConcept.text, Coding.display) ride in
    the `text` column of the parameter's coded rows, and only texts left over get rows of their
    own. `:text` asks whether any row of the resource and parameter has a matching text, and the
    coded searches read only system and code, so both see what one row per text would give them,
    for a third fewer rows (and index entries) per write."""
    coded: list[TokenValue] = []
    texts: dict[str, list[str | None]] = {}
    for v in tokens:
        if v.system is None and v.code is None:
            texts.setdefault(v.param, []).append(v.text)
        else:
            coded.append(v)
    rows: list[Row] = []
    for v in coded:
        text = v.text
        if text is None and (waiting := texts.get(v.param)):
            text = waiting.pop()
        rows.append((pk, rtype, v.param, v.system, v.code, text))
    rows += [(pk, rtype, param, None, None, t) for param, left in texts.items() for t in left]
    return rows


def rows_by_table(pk: int, rtype: str, values: Sequence[IndexValue]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    narrative = content = None
    tokens: list[TokenValue] = []

    def add(table: str, row: Row) -> None:
        out.setdefault(table, []).append(row)

    for v in values:
        match v:
            case TokenValue():
                tokens.append(v)
            case StringValue():
                add("idx_string", (pk, rtype, v.param, v.norm, v.exact))
            case DateValue():
                add("idx_date", (pk, rtype, v.param, v.low, v.high))
            case NumberValue():
                add("idx_number", (pk, rtype, v.param, v.value))
            case QuantityValue():
                add("idx_quantity", (pk, rtype, v.param, v.value, v.system, v.code, v.unit))
            case ReferenceValue():
                add("idx_reference", (pk, rtype, v.param, v.target_type, v.target_id, v.url))
            case UriValue():
                add("idx_uri", (pk, rtype, v.param, v.uri))
            case CompositeValue():
                row = _composite_row(pk, rtype, v)
                if row is not None:
                    add("idx_composite", row)
            case FullTextValue(param="_text"):
                narrative = v.text
            case FullTextValue():
                content = v.text
    if tokens:
        out["idx_token"] = token_rows(pk, rtype, tokens)
    if narrative is not None or content is not None:
        add("fts", (pk, narrative or "", content or ""))
    pairs = pair_rows(pk, rtype, values)
    if pairs:
        out["idx_pair"] = pairs
    return out
