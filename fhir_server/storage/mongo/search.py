"""Search and history on MongoDB: the filtered, sorted, keyset-paged queries.

Default order is creation order `(pk, _id)`, read in index order from `(t, pk)` so a page stops
after `_count` documents. A `_sort` reads the precomputed sort values (`so.<param>.a` ascending,
`.z` descending, as SQLite's MIN/MAX over the index rows) in an aggregation. Every page is bounded by
`pk <= snapshot`, the largest `pk` when the first page was served, and continues strictly after the
previous page's last sort key: resources created later never shift a page, and none is repeated.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.fhir.index_values import DATE_MAX, DATE_MIN
from fhir_server.search.query import Include, SearchQuery, SortKey
from fhir_server.storage.base import (
    HistoryEntry,
    HistoryPage,
    HistoryQuery,
    SearchPage,
    StoredResource,
)
from fhir_server.storage.mongo.criteria import CriteriaCompiler, Filter, Targets, types_filter
from fhir_server.storage.mongo.documents import (
    STORED_FIELDS,
    resource_key,
    seq_floor,
    sortable_param,
    to_stored,
)

Doc = dict[str, Any]
_TOP_TEXT = "\U0010ffff"
_MISSING: dict[str, tuple[object, object]] = {  # (sentinel when ascending, when descending)
    "date": (DATE_MAX, DATE_MIN),
    "number": (1e308, -1e308),
    "quantity": (1e308, -1e308),
}


class Searcher:
    """Runs searches on `resources`, inside `session` when one is given (a transaction)."""

    def __init__(self, resources: AsyncCollection[Doc], session: AsyncClientSession | None):
        self.resources = resources
        self.session = session

    # -- inner queries of chains, _has and _list -----------------------------------------------
    async def _resolve(self, where: Filter) -> Targets:
        cursor = self.resources.find(
            {**where, "d": False}, {"t": 1, "i": 1, "_id": 0}, session=self.session
        )
        return [(d["t"], d["i"]) async for d in cursor]

    async def _refs(self, where: Filter, param: str) -> Targets:
        pipeline: list[Doc] = [
            {"$match": {**where, "d": False}},
            {"$project": {"rf": 1}},
            {"$unwind": "$rf"},
            {"$match": {"rf.p": param, "rf.ri": {"$ne": None}}},
            {"$group": {"_id": {"t": "$rf.rt", "i": "$rf.ri"}}},
        ]
        cursor = await self.resources.aggregate(pipeline, session=self.session)
        return [(d["_id"]["t"], d["_id"]["i"]) async for d in cursor if d["_id"].get("t")]

    def compiler(self, types: tuple[str, ...]) -> CriteriaCompiler:
        return CriteriaCompiler(types, self._resolve, self._refs)

    # -- search --------------------------------------------------------------------------------
    async def snapshot(self) -> int:
        doc = await self.resources.find_one(
            {}, {"pk": 1, "_id": 0}, sort=[("pk", -1)], session=self.session
        )
        return int(doc["pk"]) if doc else 0

    async def search(self, query: SearchQuery) -> SearchPage:
        snapshot = query.snapshot if query.snapshot is not None else await self.snapshot()
        where = await self.compiler(query.resource_types).where(query.clauses)
        base: Filter = {**types_filter(query.resource_types), "d": False}
        base["pk"] = {"$lte": snapshot}
        filt: Filter = {"$and": [base, where]} if where else base
        backwards = query.before is not None
        cursor_pos = query.before if backwards else query.after
        docs: list[Doc] = []
        if query.count > 0:
            docs = await self._page(filt, query, backwards, cursor_pos)
        more = len(docs) > query.count
        docs = docs[: query.count]
        if backwards:
            docs.reverse()
        n = len(query.sort)
        next_cursor = prev_cursor = None
        if docs:
            if more or backwards:
                next_cursor = _position(docs[-1], n)
            if (more and backwards) or (not backwards and query.after is not None):
                prev_cursor = _position(docs[0], n)
        total: int | None = None
        first_page = query.after is None and query.before is None
        if first_page and not more and query.count > 0:
            total = len(docs)
        elif query.total in ("accurate", "estimate"):
            total = await self.resources.count_documents(filt, session=self.session)
        matches = [to_stored(d) for d in docs]
        included = await self._includes(query.includes, matches) if query.includes else []
        return SearchPage(matches, included, total, next_cursor, snapshot, prev_cursor)

    async def _page(
        self, filt: Filter, query: SearchQuery, backwards: bool, after: tuple[object, ...] | None
    ) -> list[Doc]:
        keys = query.sort
        descending = [k.descending != backwards for k in keys]
        names = [f"s{i}" for i in range(len(keys))]
        order = [(name, -1 if d else 1) for name, d in zip(names, descending, strict=True)]
        tail = -1 if backwards else 1
        order += [("pk", tail), ("_id", tail)]
        keyset = _keyset([name for name, _ in order], [d == -1 for _, d in order], after)
        limit = query.count + 1
        if not keys:
            final = {"$and": [filt, keyset]} if keyset else filt
            cursor = self.resources.find(
                final, STORED_FIELDS, sort=order, limit=limit, session=self.session
            )
            return [d async for d in cursor]
        fields = {name: _sort_expr(k) for name, k in zip(names, keys, strict=True)}
        pipeline: list[Doc] = [
            {"$match": filt},
            {"$project": {**STORED_FIELDS, **fields}},
        ]
        if keyset:
            pipeline.append({"$match": keyset})
        pipeline += [{"$sort": dict(order)}, {"$limit": limit}]
        agg = await self.resources.aggregate(pipeline, session=self.session)
        return [d async for d in agg]

    # -- _include / _revinclude ----------------------------------------------------------------
    async def _includes(
        self, includes: tuple[Include, ...], matches: list[StoredResource]
    ) -> list[StoredResource]:
        seen = {resource_key(m.resource_type, m.id) for m in matches}
        frontier = [(m.resource_type, m.id) for m in matches]
        found: list[StoredResource] = []
        for round_ in range(4):  # :iterate goes a few levels deep; bounded so cycles end
            new: list[StoredResource] = []
            for inc in includes:
                if round_ > 0 and not inc.iterate:
                    continue
                new += await self._include_once(inc, frontier)
            frontier = []
            for res in new:
                key = resource_key(res.resource_type, res.id)
                if key not in seen:
                    seen.add(key)
                    found.append(res)
                    frontier.append((res.resource_type, res.id))
            if not frontier:
                break
        return found

    async def _include_once(self, inc: Include, frontier: Targets) -> list[StoredResource]:
        if not inc.reverse:
            sources = [resource_key(t, i) for t, i in frontier if t == inc.source_type]
            if not sources:
                return []
            cursor = self.resources.find({"_id": {"$in": sources}}, {"rf": 1}, session=self.session)
            keys: set[str] = set()
            async for doc in cursor:
                for ref in doc.get("rf", ()):
                    if inc.param != "*" and ref.get("p") != inc.param:
                        continue
                    rt, ri = ref.get("rt"), ref.get("ri")
                    if rt and ri and (inc.target_type is None or rt == inc.target_type):
                        keys.add(resource_key(rt, ri))
            if not keys:
                return []
            filt: Filter = {"_id": {"$in": sorted(keys)}, "d": False}
        else:
            if inc.target_type is not None:
                frontier = [(t, i) for t, i in frontier if t == inc.target_type]
            by_type: dict[str, list[str]] = {}
            for t, i in frontier:
                by_type.setdefault(t, []).append(i)
            if not by_type:
                return []
            elem: list[Filter] = []
            for t, ids in sorted(by_type.items()):
                cond: Filter = {"rt": t, "ri": {"$in": ids}}
                if inc.param != "*":
                    cond["p"] = inc.param
                elem.append({"rf": {"$elemMatch": cond}})
            filt = {"$or": elem, "d": False}
            if inc.source_type != "*":
                filt["t"] = inc.source_type
        cursor = self.resources.find(filt, STORED_FIELDS, session=self.session)
        return [to_stored(d) async for d in cursor]


def _sort_expr(key: SortKey) -> object:
    if key.param == "_id":
        return "$i"
    if key.param == "_lastUpdated":
        return "$u"
    asc, desc = _MISSING.get(key.param_type, (_TOP_TEXT, ""))
    if not sortable_param(key.param):
        return desc if key.descending else asc
    field = f"$so.{key.param}.{'z' if key.descending else 'a'}"
    return {"$ifNull": [field, desc if key.descending else asc]}


def _keyset(names: list[str], descending: list[bool], after: tuple[object, ...] | None) -> Filter:
    """Documents strictly after `after` in the order `names`: an OR of prefix equalities."""
    if after is None:
        return {}
    ors: list[Filter] = []
    for i, name in enumerate(names):
        cond: Filter = {names[j]: after[j] for j in range(i)}
        cond[name] = {"$lt" if descending[i] else "$gt": after[i]}
        ors.append(cond)
    return {"$or": ors}


def _position(doc: Doc, n: int) -> tuple[object, ...]:
    return (*(doc[f"s{i}"] for i in range(n)), doc["pk"], doc["_id"])


# -- history -----------------------------------------------------------------------------------
async def run_history(
    history: AsyncCollection[Doc], q: HistoryQuery, session: AsyncClientSession | None = None
) -> HistoryPage:
    filt: Filter = {}
    if q.resource_type is not None:
        filt["t"] = q.resource_type
    if q.id is not None:
        filt["i"] = q.id
    seq: Filter = {}
    if q.since is not None:
        seq["$gte"] = seq_floor(q.since)
    if q.at is not None:
        low, high = q.at
        # Current at some time in [low, high): written before high, not replaced before low.
        seq["$lt"] = seq_floor(high)
        filt["$or"] = [{"nu": None}, {"nu": {"$gt": low}}]
    total = None
    if q.id is not None:  # counting a whole type's or the system's history would cost a scan
        total = await history.count_documents({**filt, **({"sq": seq} if seq else {})})
    if q.before_seq is not None:
        seq["$lt"] = min(q.before_seq, seq.get("$lt", q.before_seq))
    if seq:
        filt["sq"] = seq
    cursor = history.find(filt, sort=[("sq", -1)], limit=q.count + 1, session=session)
    docs = [d async for d in cursor]
    more = len(docs) > q.count
    docs = docs[: q.count]
    entries = [HistoryEntry(to_stored(d), d["m"]) for d in docs]
    return HistoryPage(entries, int(docs[-1]["sq"]) if more and docs else None, total)
