"""A `Storage` that shows and changes only what an access grant reaches.

Built per request by `enforce.scoped_services`; the rules and the reasons for putting them here
are in fhir_server/auth/enforce.py. Every primitive of the storage contract is written out below
(no attribute forwarding), so a primitive added to the contract later cannot bypass enforcement:
tests/auth/enforcement/test_scoped_storage.py fails until it is handled here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from fhir_server.errors import NotFound
from fhir_server.fhir.index_values import IndexValue
from fhir_server.search.query import Clause, IdCriterion, SearchQuery
from fhir_server.storage.base import (
    HistoryEntry,
    HistoryPage,
    HistoryQuery,
    JsonDoc,
    Record,
    SearchPage,
    Storage,
    StoredResource,
    Transaction,
    Write,
)

if TYPE_CHECKING:
    from fhir_server.auth.enforce import Access, Enforcer

_WRITE_LETTER = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}
_CHUNK = 500
MAX_TOP_UP_ROUNDS = 8


class Searcher(Protocol):
    async def search(self, query: SearchQuery) -> SearchPage: ...


def unscoped(storage: Storage) -> Storage:
    """The engine beneath a scoped storage: for the server's own look-ups (value sets, code
    systems) that a search needs, which are not the caller's data access."""
    return storage.inner if isinstance(storage, ScopedStorage) else storage


async def _empty_page(searcher: Searcher, query: SearchQuery) -> SearchPage:
    """No results, with the engine's snapshot (callers page on from it, e.g. $everything)."""
    if query.snapshot is not None:
        return SearchPage([], [], 0, None, query.snapshot)
    nothing = Clause((IdCriterion(("",)),))  # no resource has an empty id: one index probe
    page = await searcher.search(SearchQuery(query.resource_types, (nothing,), count=0))
    return SearchPage([], [], 0, None, page.snapshot)


async def reachable_ids(
    enforcer: Enforcer, searcher: Searcher, resource_type: str, ids: Iterable[str], access: Access
) -> set[str]:
    """Which of `ids` (current, not deleted resources of the type) `access` reaches, asked of the
    engine as `_id` + each rule's criteria."""
    wanted = list(dict.fromkeys(ids))
    if not wanted or not access.rules:
        return set()
    if access.unrestricted:
        return set(wanted)
    found: set[str] = set()
    for rule in access.rules:
        clauses = await enforcer.rule_clauses(resource_type, rule)
        if clauses is None:
            continue
        rest = [i for i in wanted if i not in found]
        for start in range(0, len(rest), _CHUNK):
            chunk = tuple(rest[start : start + _CHUNK])
            query = SearchQuery(
                (resource_type,), (Clause((IdCriterion(chunk),)), *clauses), count=len(chunk)
            )
            page = await searcher.search(query)
            found.update(m.id for m in page.matches)
    return found


async def filter_resources(
    enforcer: Enforcer,
    searcher: Searcher,
    resources: Sequence[StoredResource],
    letters: str,
) -> list[StoredResource]:
    """The resources the grant reaches with any of `letters`, in their order."""
    by_type: dict[str, list[str]] = {}
    for r in resources:
        by_type.setdefault(r.resource_type, []).append(r.id)
    keep: set[tuple[str, str]] = set()
    for rtype, ids in by_type.items():
        access = enforcer.policy.access_any(rtype, letters)
        visible = await reachable_ids(enforcer, searcher, rtype, ids, access)
        keep.update((rtype, i) for i in visible)
    return [r for r in resources if (r.resource_type, r.id) in keep]


async def _search(
    enforcer: Enforcer, searcher: Searcher, query: SearchQuery, letters: str, strict: bool
) -> SearchPage:
    """A search restricted to what `letters` reach. Types no scope covers are left out (SMART
    allows "200 with results left out"; an operation such as $everything then returns what is
    granted); `strict`: when no searched type is covered, refuse the search (403) instead."""
    from fhir_server.auth.enforce import forbidden

    policy = enforcer.policy
    linked = await enforcer.restrict_links(query.clauses, searcher)  # chains, _has, _list
    if linked is not query.clauses:
        query = dataclasses.replace(query, clauses=linked)
    types = query.resource_types
    if not types:
        if policy.unrestricted_everywhere(letters):
            return await searcher.search(query)
        types = tuple(sorted(enforcer.services.resource_types))
    accesses = {t: policy.access_any(t, letters) for t in types}
    covered = [t for t in types if accesses[t].covered]
    if strict and not covered:
        raise forbidden(types[0] if len(types) == 1 else None, letters, policy)
    plans = {t: await enforcer.plan(t, accesses[t]) for t in covered if accesses[t].rules}
    kept = tuple(t for t, plan in plans.items() if not plan.nothing)
    if not kept:
        return await _empty_page(searcher, query)
    query = dataclasses.replace(query, resource_types=kept)
    first = plans[kept[0]]
    if all(not plans[t].post_filter and plans[t].clauses == first.clauses for t in kept):
        # The same criteria restrict every type (one type; or e.g. a compartment's types that
        # share linking parameters): added to the query, paging and totals stay exact.
        query = dataclasses.replace(query, clauses=(*first.clauses, *query.clauses))
        page = await searcher.search(query)
        included = await filter_resources(enforcer, searcher, page.included, "rs")
        return dataclasses.replace(page, included=included)
    return await _post_filtered(enforcer, searcher, query, letters)


async def _post_filtered(
    enforcer: Enforcer, searcher: Searcher, query: SearchQuery, letters: str
) -> SearchPage:
    """Search, then keep the matches the grant reaches; forward pages are topped up from the
    following ones (a few rounds at most) so that a page is not left nearly empty."""
    first = page = await searcher.search(query)
    matches = await filter_resources(enforcer, searcher, page.matches, letters)
    included = list(page.included)
    rounds = 0
    while (
        len(matches) < query.count
        and page.next_cursor is not None
        and query.before is None
        and rounds < MAX_TOP_UP_ROUNDS
    ):
        rounds += 1
        more = dataclasses.replace(
            query, after=page.next_cursor, snapshot=page.snapshot, count=query.count - len(matches)
        )
        page = await searcher.search(more)
        matches += await filter_resources(enforcer, searcher, page.matches, letters)
        included += page.included
    unique = list({(r.resource_type, r.id): r for r in included}.values())
    kept = await filter_resources(enforcer, searcher, unique, "rs")
    return dataclasses.replace(
        page, matches=matches, included=kept, total=None, prev_cursor=first.prev_cursor
    )


class ScopedStorage:
    """The storage as one grant sees it (see fhir_server/auth/enforce.py)."""

    def __init__(self, inner: Storage, enforcer: Enforcer) -> None:
        self.inner = inner
        self.enforcer = enforcer

    def _access(self, resource_type: str, letter: str, id: str | None = None) -> Access:
        """What `letter` reaches of the type. A type no scope covers reads as empty: the router
        refuses interactions on it (403), while operations simply see nothing of it."""
        from fhir_server.auth.enforce import ALL

        policy = self.enforcer.policy
        if letter == "r" and id is not None and policy.is_fhir_user(resource_type, id):
            return ALL
        return policy.access(resource_type, letter)

    async def _reachable(self, resource_type: str, id: str, access: Access) -> bool:
        ids = await reachable_ids(self.enforcer, self.inner, resource_type, [id], access)
        return id in ids

    # -- lifecycle: not data access ----------------------------------------------------------
    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ready(self) -> bool:
        return await self.inner.ready()

    # -- resources ------------------------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        access = self._access(resource_type, "r", id)
        if not access.rules:
            return None
        stored = await self.inner.read(resource_type, id)
        if stored is None or access.unrestricted:
            return stored
        if stored.deleted or not await self._reachable(resource_type, id, access):
            return None  # reads as "not known": existence outside the grant does not leak
        return stored

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        access = self._access(resource_type, "r", id)
        if not access.unrestricted and not await self._reachable(resource_type, id, access):
            return None
        return await self.inner.vread(resource_type, id, version)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        rtype = query.resource_type
        if rtype is not None and query.id is not None:
            access = self._access(rtype, "r", query.id)
            if access.unrestricted or await self._reachable(rtype, query.id, access):
                return await self.inner.history(query)
            return HistoryPage([], None, 0)
        policy = self.enforcer.policy
        if rtype is not None:
            access = self._access(rtype, "s")
            if access.unrestricted:
                return await self.inner.history(query)
            if not access.rules:
                return HistoryPage([], None, 0)
        elif policy.unrestricted_everywhere("s"):
            return await self.inner.history(query)
        elif not policy.covers_some_type("s"):
            raise self._forbidden_all("s")
        return await self._filtered_history(query)

    async def _filtered_history(self, query: HistoryQuery) -> HistoryPage:
        """History filtered after paging, topped up from the following pages so that a page is
        filled (never more than `_count`: a top-up asks for no more entries than are missing)
        and never empty while older entries remain. Top-ups stop after MAX_TOP_UP_ROUNDS pages
        once the page has something."""
        if query.count <= 0:
            return HistoryPage([], (await self.inner.history(query)).next_before_seq, None)
        entries: list[HistoryEntry] = []
        cursor = query.before_seq
        top_ups = 0
        while True:
            want = query.count - len(entries) if entries else query.count
            top_ups += 1 if entries else 0
            page = await self.inner.history(
                dataclasses.replace(query, count=want, before_seq=cursor)
            )
            current = [e.resource for e in page.entries]
            visible = await filter_resources(self.enforcer, self.inner, current, "s")
            keep = {(r.resource_type, r.id) for r in visible}
            entries += [
                e for e in page.entries if (e.resource.resource_type, e.resource.id) in keep
            ]
            cursor = page.next_before_seq
            if cursor is None or len(entries) >= query.count:
                break
            if top_ups >= MAX_TOP_UP_ROUNDS:
                break
        return HistoryPage(entries, cursor, None)

    def _forbidden_all(self, letter: str) -> Exception:
        from fhir_server.auth.enforce import forbidden

        return forbidden(None, letter, self.enforcer.policy)

    async def search(self, query: SearchQuery) -> SearchPage:
        # System-wide (no type named) with nothing covered: 403. A named type no scope covers
        # holds nothing for this grant; interactions on it were refused (403) by the router.
        strict = not query.resource_types
        return await _search(self.enforcer, self.inner, query, "s", strict=strict)

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        async with self.inner.transaction() as tx:
            yield ScopedTransaction(tx, self.enforcer)

    async def count(self, resource_type: str | None = None) -> int:
        policy = self.enforcer.policy
        if resource_type is None:
            unrestricted = policy.unrestricted_everywhere("s")
        else:
            unrestricted = policy.access(resource_type, "s").unrestricted
        if not unrestricted:
            raise self._forbidden_all("s")  # a count would reveal what the grant cannot see
        return await self.inner.count(resource_type)

    async def reindex(self, items: Sequence[tuple[StoredResource, Sequence[IndexValue]]]) -> int:
        for letter in ("r", "u"):
            if not self.enforcer.policy.unrestricted_everywhere(letter):
                raise self._forbidden_all(letter)
        return await self.inner.reindex(items)

    # -- internal records and leases: server bookkeeping, not FHIR data ----------------------
    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        await self.inner.put_record(kind, key, doc)

    async def get_record(self, kind: str, key: str) -> Record | None:
        return await self.inner.get_record(kind, key)

    async def list_records(
        self, kind: str, after_key: str | None = None, limit: int = 100
    ) -> list[Record]:
        return await self.inner.list_records(kind, after_key, limit)

    async def delete_record(self, kind: str, key: str) -> bool:
        return await self.inner.delete_record(kind, key)

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        return await self.inner.acquire_lease(name, owner, ttl_s)

    async def release_lease(self, name: str, owner: str) -> None:
        await self.inner.release_lease(name, owner)


class ScopedTransaction:
    """A transaction as one grant sees it. Reads (of the version a write replaces) see what any
    granted letter reaches, searches what `s` reaches; each write is checked against its own
    letter before and after it is made."""

    def __init__(self, inner: Transaction, enforcer: Enforcer) -> None:
        self.inner = inner
        self.enforcer = enforcer
        self._hidden: set[tuple[str, str]] = set()  # read, existing, outside the grant

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        stored = await self.inner.read(resource_type, id)
        if stored is None or stored.deleted:
            return stored
        access = self.enforcer.policy.access_any(resource_type, "cruds")
        if access.unrestricted:
            return stored
        ids = await reachable_ids(self.enforcer, self.inner, resource_type, [id], access)
        if id not in ids:
            # update, patch and delete of a resource outside the grant answer 404 like reads,
            # so that existence does not leak (a delete would otherwise "succeed" with 204)
            self._hidden.add((resource_type, id))
            raise NotFound(f"{resource_type}/{id} is not known")
        return stored

    async def search(self, query: SearchQuery) -> SearchPage:
        # Conditional create/update/delete/patch and conditional references search: `s` is
        # needed, as the match (returned by a conditional create) is a search result.
        return await _search(self.enforcer, self.inner, query, "s", strict=True)

    async def write(self, write: Write) -> None:
        from fhir_server.auth.enforce import forbidden

        res = write.resource
        rtype, id = res.resource_type, res.id
        letter = _WRITE_LETTER[write.method]
        policy = self.enforcer.policy
        access = policy.access(rtype, letter)
        if not access.covered:
            raise forbidden(rtype, letter, policy)
        if (rtype, id) in self._hidden:
            raise NotFound(f"{rtype}/{id} is not known")
        if access.unrestricted:
            await self.inner.write(write)
            return
        current = await self.inner.read(rtype, id)
        if current is not None and not current.deleted:
            ids = await reachable_ids(self.enforcer, self.inner, rtype, [id], access)
            if id not in ids:
                if id in await reachable_ids(
                    self.enforcer, self.inner, rtype, [id], policy.access_any(rtype, "cruds")
                ):
                    raise forbidden(rtype, letter, policy)
                raise NotFound(f"{rtype}/{id} is not known")
        await self.inner.write(write)
        if res.deleted:
            return
        if id not in await reachable_ids(self.enforcer, self.inner, rtype, [id], access):
            from fhir_server.auth.enforce import insufficient_scope

            where = (
                " (outside the patient in context's compartment)"
                if any(r.patient for r in access.rules)
                else ""
            )
            raise insufficient_scope(
                f"The access token's scopes do not permit writing this {rtype}{where}"
            )

    async def put_record(self, kind: str, key: str, doc: JsonDoc) -> None:
        await self.inner.put_record(kind, key, doc)
