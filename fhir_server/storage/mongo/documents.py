"""The MongoDB engine's document shapes: a `Write` -> a current-version and a history document.

`resources` holds one document per (type, id), the current version with its body and its search
values; `history` one document per version. Search values are arrays of small sub-documents, one
array per value type, so one multikey compound index per query shape serves `$elemMatch` queries:

    tk  token      {p: param, s: system, c: code} and text rows {p, x: normalised text}
    st  string     {p, n: normalised, e: exact}
    dt  date       {p, lo, hi}                      a [lo, hi) range in microseconds
    nm  number     {p, v}
    qt  quantity   {p, v, s, c, u}
    rf  reference  {p, rt: target type, ri: target id, url}
    ur  uri        {p, u}
    cp  composite  {p, s1, c1, s2, c2, v2, lo2, hi2, x2}
    wn / wc        words of the narrative (`_text`) / of all text (`_content`), for prefix search
    so             {param: {a: ascending sort value, z: descending sort value}}

`pk` orders resources by creation and `sq` orders history: both are `last_updated * 1024` plus a
per-process counter, so they need no round trip to allocate, grow with time across processes,
and fit an int64 until the year 2255. `pc` (the patient compartment a resource belongs to) is the
shard key the data model is designed for (see the README).
"""

from __future__ import annotations

import itertools
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from bson.binary import Binary

from fhir_server.fhir.compartments import compartment_params
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
from fhir_server.storage.base import Method, StoredResource

Doc = dict[str, Any]
INDEX_FIELDS = ("tk", "st", "dt", "nm", "qt", "rf", "ur", "cp", "wn", "wc", "so")
ARRAY_FOR_TYPE = {
    "token": "tk",
    "string": "st",
    "date": "dt",
    "number": "nm",
    "quantity": "qt",
    "reference": "rf",
    "uri": "ur",
    "composite": "cp",
}
_SEQ_BITS = 10
_counter = itertools.count(random.randrange(1 << _SEQ_BITS))


def next_seq(last_updated: int) -> int:
    """A position after every earlier microsecond: for `pk` and the history `sq`."""
    return (last_updated << _SEQ_BITS) | (next(_counter) & ((1 << _SEQ_BITS) - 1))


def seq_floor(us: int) -> int:
    """The smallest position of microsecond `us` (for `_since` and snapshots)."""
    return us << _SEQ_BITS


def resource_key(resource_type: str, id: str) -> str:
    return f"{resource_type}/{id}"


def history_key(resource_type: str, id: str, version: int) -> str:
    return f"{resource_type}/{id}/{version}"


def words(text: str) -> list[str]:
    """Lower-cased, accent-stripped words, as SQLite's unicode61 tokenizer splits them."""
    folded = "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    return re.findall(r"[^\W_]+", folded.lower())


def _sort_value(v: IndexValue) -> tuple[Any, Any] | None:
    if isinstance(v, TokenValue):
        return (v.code, v.code) if v.code is not None else None
    if isinstance(v, StringValue):
        return v.norm, v.norm
    if isinstance(v, DateValue):
        return v.low, v.high
    if isinstance(v, NumberValue | QuantityValue):
        return v.value, v.value
    if isinstance(v, ReferenceValue):
        return (v.target_id, v.target_id) if v.target_id is not None else None
    if isinstance(v, UriValue):
        return v.uri, v.uri
    return None


def _composite(v: CompositeValue) -> Doc | None:
    if len(v.components) != 2:
        return None
    first, second = v.components
    if not isinstance(first, TokenValue):
        return None
    doc: Doc = {"p": v.param, "s1": first.system, "c1": first.code}
    match second:
        case TokenValue(system=s, code=c):
            doc.update(s2=s, c2=c)
        case QuantityValue(value=x, system=s, code=c):
            doc.update(v2=x, s2=s, c2=c)
        case NumberValue(value=x):
            doc.update(v2=x)
        case DateValue(low=lo, high=hi):
            doc.update(lo2=lo, hi2=hi)
        case StringValue(norm=n):
            doc.update(x2=n)
        case ReferenceValue(target_type=t, target_id=i, url=u):
            doc.update(c2=f"{t}/{i}" if t and i else u)
        case UriValue(uri=u):
            doc.update(c2=u)
        case _:
            return None
    return doc


def index_fields(values: Iterable[IndexValue]) -> Doc:
    """The search-value arrays of one resource (every field present, empty when unused)."""
    out: Doc = {f: [] for f in INDEX_FIELDS}
    sort: dict[str, list[Any]] = {}
    wn: set[str] = set()
    wc: set[str] = set()
    for v in values:
        match v:
            case TokenValue(param=p, system=s, code=c, text=x):
                out["tk"].append({"p": p, "x": x} if x is not None else {"p": p, "s": s, "c": c})
            case StringValue(param=p, norm=n, exact=e):
                out["st"].append({"p": p, "n": n, "e": e})
            case DateValue(param=p, low=lo, high=hi):
                out["dt"].append({"p": p, "lo": lo, "hi": hi})
            case NumberValue(param=p, value=x):
                out["nm"].append({"p": p, "v": x})
            case QuantityValue(param=p, value=x, system=s, code=c, unit=u):
                out["qt"].append({"p": p, "v": x, "s": s, "c": c, "u": u})
            case ReferenceValue(param=p, target_type=rt, target_id=ri, url=url):
                out["rf"].append({"p": p, "rt": rt, "ri": ri, "url": url})
            case UriValue(param=p, uri=u):
                out["ur"].append({"p": p, "u": u})
            case CompositeValue():
                doc = _composite(v)
                if doc is not None:
                    out["cp"].append(doc)
            case FullTextValue(param="_text", text=text):
                wn.update(words(text))
            case FullTextValue(text=text):
                wc.update(words(text))
        sv = _sort_value(v)
        if sv is not None and sortable_param(v.param):
            lo, hi = sv
            have = sort.get(v.param)
            if have is None:
                sort[v.param] = [lo, hi]
            else:
                have[0] = min(have[0], lo)
                have[1] = max(have[1], hi)
    out["wn"] = sorted(wn)
    out["wc"] = sorted(wc)
    out["so"] = {p: {"a": lo, "z": hi} for p, (lo, hi) in sort.items()}
    return out


def sortable_param(param: str) -> bool:
    """Parameter codes usable as a field name (the `so` sort values are keyed by code)."""
    return bool(param) and "." not in param and not param.startswith("$")


def patient_compartment(resource_type: str, id: str, values: Sequence[IndexValue]) -> str:
    """The shard key: `Patient/<id>` of the patient whose compartment holds this resource, or the
    resource's own `Type/id` when it is in no (single) patient's compartment."""
    if resource_type == "Patient":
        return resource_key("Patient", id)
    params = set(compartment_params("Patient", resource_type))
    for v in values:
        if (
            isinstance(v, ReferenceValue)
            and v.target_type == "Patient"
            and v.param in params
            and v.target_id
        ):
            return resource_key("Patient", v.target_id)
    return resource_key(resource_type, id)


def current_doc(res: StoredResource, index: Sequence[IndexValue], pk: int) -> Doc:
    doc: Doc = {
        "_id": resource_key(res.resource_type, res.id),
        "t": res.resource_type,
        "i": res.id,
        "v": res.version,
        "u": res.last_updated,
        "d": res.deleted,
        "pk": pk,
        "pc": patient_compartment(res.resource_type, res.id, index),
        "b": Binary(res.body),
    }
    doc.update(index_fields(() if res.deleted else index))
    return doc


def history_doc(res: StoredResource, method: Method, seq: int) -> Doc:
    return {
        "_id": history_key(res.resource_type, res.id, res.version),
        "t": res.resource_type,
        "i": res.id,
        "v": res.version,
        "u": res.last_updated,
        "m": method,
        "sq": seq,
        "b": Binary(res.body),
    }


def to_stored(doc: Doc) -> StoredResource:
    deleted = bool(doc.get("d", False)) or doc.get("m") == "DELETE"
    return StoredResource(
        doc["t"], doc["i"], int(doc["v"]), int(doc["u"]), deleted, bytes(doc["b"])
    )


# What a search reads from `resources`: no search arrays.
STORED_FIELDS = {"t": 1, "i": 1, "v": 1, "u": 1, "d": 1, "b": 1, "pk": 1}
