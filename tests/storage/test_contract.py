"""The storage contract (`storage/base.py`), the same tests on every engine: versions, history,
transactions, optimistic versioning, counting and reindexing."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.fhir.index_values import TokenValue
from fhir_server.search.query import (
    Clause,
    IdCriterion,
    LastUpdatedCriterion,
    SearchQuery,
    TokenCriterion,
)
from fhir_server.storage.base import HistoryQuery, Storage, VersionConflict, Write
from tests.storage.helpers import body, now, remove, save, save_in, stored

pytestmark = pytest.mark.all_engines


async def test_read_vread_update_delete(store: Storage) -> None:
    assert await store.read("Patient", "p1") is None
    v1 = await save(store, "Patient", "p1", gender="male")
    v2 = await save(store, "Patient", "p1", gender="female")
    current = await store.read("Patient", "p1")
    assert current == v2 and body(current)["gender"] == "female"
    assert await store.vread("Patient", "p1", 1) == v1
    assert await store.vread("Patient", "p1", 3) is None
    gone = await remove(store, "Patient", "p1")
    marker = await store.read("Patient", "p1")
    assert marker is not None and marker.deleted and marker.version == 3 == gone.version
    old = await store.vread("Patient", "p1", 3)
    assert old is not None and old.deleted
    assert await store.count("Patient") == 0
    again = await save(store, "Patient", "p1", gender="other")  # re-created after deletion
    assert again.version == 4 and await store.count("Patient") == 1
    assert await store.count() == 1


async def test_stale_expected_version_is_a_conflict_and_writes_nothing(store: Storage) -> None:
    await save(store, "Patient", "p1")
    await save(store, "Patient", "p1")
    stale = Write(stored("Patient", "p1", 2), (), 1, "PUT")
    with pytest.raises(VersionConflict):
        async with store.transaction() as tx:
            await tx.write(stale)
    dup = Write(stored("Patient", "p1", 1), (), 0, "POST")
    with pytest.raises(VersionConflict):
        async with store.transaction() as tx:
            await tx.write(dup)
    current = await store.read("Patient", "p1")
    assert current is not None and current.version == 2
    page = await store.history(HistoryQuery("Patient", "p1"))
    assert page.total == 2


async def test_transaction_is_all_or_nothing_and_sees_its_own_writes(store: Storage) -> None:
    code = TokenValue("code", "http://loinc.org", "8867-4")
    query = SearchQuery(
        ("Observation",), (Clause((TokenCriterion("code", None, "8867-4", True),)),)
    )
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await save_in(tx, "Patient", "a")
            await save_in(tx, "Observation", "o1", [code])
            seen = await tx.read("Patient", "a")
            assert seen is not None and seen.version == 1
            page = await tx.search(query)
            assert [m.id for m in page.matches] == ["o1"]
            raise RuntimeError("abort")
    assert await store.read("Patient", "a") is None
    assert await store.read("Observation", "o1") is None
    assert (await store.search(query)).matches == []
    async with store.transaction() as tx:
        await save_in(tx, "Patient", "a")
        await save_in(tx, "Observation", "o1", [code])
    assert await store.read("Patient", "a") is not None
    assert [m.id for m in (await store.search(query)).matches] == ["o1"]


async def test_history_levels_since_at_and_paging(store: Storage) -> None:
    await save(store, "Patient", "a")  # a1
    await save(store, "Patient", "b")  # b1
    mid = now()
    await save(store, "Patient", "a")  # a2
    await save(store, "Observation", "o")  # o1
    await remove(store, "Patient", "b")  # b2 (delete)
    inst = await store.history(HistoryQuery("Patient", "a"))
    assert [(e.resource.id, e.resource.version) for e in inst.entries] == [("a", 2), ("a", 1)]
    assert inst.total == 2 and inst.next_before_seq is None
    typ = await store.history(HistoryQuery("Patient"))
    assert [(e.resource.id, e.resource.version) for e in typ.entries] == [
        ("b", 2),
        ("a", 2),
        ("b", 1),
        ("a", 1),
    ]
    assert typ.entries[0].method == "DELETE" and typ.entries[0].resource.deleted
    system = await store.history(HistoryQuery())
    assert len(system.entries) == 5
    since = await store.history(HistoryQuery(since=mid))
    assert {(e.resource.id, e.resource.version) for e in since.entries} == {
        ("a", 2),
        ("o", 1),
        ("b", 2),
    }
    at = await store.history(HistoryQuery("Patient", at=(mid, mid + 1)))
    assert {(e.resource.id, e.resource.version) for e in at.entries} == {("a", 1), ("b", 1)}
    pages: list[tuple[str, int]] = []
    before = None
    while True:
        page = await store.history(HistoryQuery(count=2, before_seq=before))
        pages += [(e.resource.id, e.resource.version) for e in page.entries]
        if page.next_before_seq is None:
            break
        before = page.next_before_seq
    assert pages == [(e.resource.id, e.resource.version) for e in system.entries]


async def test_parallel_updates_of_one_resource_lose_no_write(store: Storage) -> None:
    await save(store, "Patient", "c")

    async def update(n: int) -> None:
        await save(store, "Patient", "c", n=n)

    await asyncio.gather(*(update(n) for n in range(8)))
    current = await store.read("Patient", "c")
    assert current is not None and current.version == 9
    page = await store.history(HistoryQuery("Patient", "c", count=100))
    assert page.total == 9
    assert {body(e.resource).get("n") for e in page.entries} >= set(range(8))


async def test_reindex_replaces_search_values_of_current_versions_only(store: Storage) -> None:
    old = await save(store, "Observation", "o", [TokenValue("code", "s", "old")])
    query = SearchQuery(("Observation",), (Clause((TokenCriterion("code", "s", "new"),)),))
    assert (await store.search(query)).matches == []
    assert await store.reindex([(old, [TokenValue("code", "s", "new")])]) == 1
    assert [m.id for m in (await store.search(query)).matches] == ["o"]
    await save(store, "Observation", "o", [TokenValue("code", "s", "new")])
    assert await store.reindex([(old, [TokenValue("code", "s", "other")])]) == 0  # stale


async def test_ready(store: Storage) -> None:
    assert await store.ready()


def _by_id(*ids: str) -> SearchQuery:
    return SearchQuery(("Patient",), (Clause((IdCriterion(ids),)),))


async def test_last_updated_search_and_deleted_resources_are_not_found(store: Storage) -> None:
    for pid in ("p1", "p2", "p3"):
        await save(store, "Patient", pid)
    mark = now()
    await save(store, "Patient", "p2")
    after = SearchQuery(("Patient",), (Clause((LastUpdatedCriterion("gt", mark, mark + 1),)),))
    before = SearchQuery(("Patient",), (Clause((LastUpdatedCriterion("lt", mark, mark + 1),)),))
    assert [m.id for m in (await store.search(after)).matches] == ["p2"]
    assert {m.id for m in (await store.search(before)).matches} == {"p1", "p3"}
    await remove(store, "Patient", "p3")
    assert {m.id for m in (await store.search(_by_id("p1", "p3"))).matches} == {"p1"}


async def test_paging_is_stable_under_concurrent_writes(store: Storage) -> None:
    for pid in ("p1", "p2", "p3"):
        await save(store, "Patient", pid)
    first = await store.search(SearchQuery(("Patient",), count=2, total="accurate"))
    assert first.total == 3 and len(first.matches) == 2
    await save(store, "Patient", "p0")  # created after the first page: not in this search
    await save(store, "Patient", first.matches[0].id)  # updated: not served twice
    await remove(store, "Patient", "p3")  # deleted meanwhile: gone from later pages
    rest = await store.search(
        SearchQuery(("Patient",), count=2, after=first.next_cursor, snapshot=first.snapshot)
    )
    all_ids = [m.id for m in first.matches] + [m.id for m in rest.matches]
    assert sorted(all_ids) == ["p1", "p2"] and rest.next_cursor is None


def _code_query(code: str) -> SearchQuery:
    return SearchQuery(("Observation",), (Clause((TokenCriterion("code", None, code, True),)),))


async def test_many_index_rows_in_one_transaction_are_all_searchable(store: Storage) -> None:
    """Every index row of a large transaction is searchable after it, once."""
    many = [TokenValue("code", "http://x", f"c{i}") for i in range(150)]
    async with store.transaction() as tx:
        await save_in(tx, "Observation", "wide", many)
        for i in range(70):
            await save_in(tx, "Observation", f"o{i}", [TokenValue("code", "http://x", f"n{i % 7}")])
    for code in ("c0", "c63", "c64", "c79", "c80", "c143", "c148", "c149"):
        assert [m.id for m in (await store.search(_code_query(code))).matches] == ["wide"]
    found = (await store.search(_code_query("n3"))).matches
    assert sorted(m.id for m in found) == sorted(f"o{i}" for i in range(70) if i % 7 == 3)


async def test_two_versions_written_in_one_batch_keep_only_the_last_ones_index(
    store: Storage,
) -> None:
    """Writes buffered together (no read between them) are stored together: a second version of
    the same resource must still replace the first one's search values."""
    async with store.transaction() as tx:
        first = stored("Observation", "twice", 1)
        await tx.write(Write(first, [TokenValue("code", "http://x", "old")], 0, "POST"))
        second = stored("Observation", "twice", 2)
        await tx.write(Write(second, [TokenValue("code", "http://x", "new")], 1, "PUT"))
    assert (await store.search(_code_query("old"))).matches == []
    assert [m.id for m in (await store.search(_code_query("new"))).matches] == ["twice"]
    current = await store.read("Observation", "twice")
    assert current is not None and current.version == 2


async def test_a_conflict_among_many_buffered_writes_fails_the_whole_transaction(
    store: Storage,
) -> None:
    """A conflict early in a large transaction fails all of it and leaves nothing stored."""
    with pytest.raises(VersionConflict):
        async with store.transaction() as tx:
            for i in range(150):
                expected = 5 if i == 10 else 0  # entry 10 expects a version that does not exist
                res = stored("Observation", f"bulk{i}", expected + 1)
                await tx.write(
                    Write(res, [TokenValue("code", "http://x", "bulk")], expected, "PUT")
                )
    assert await store.read("Observation", "bulk0") is None
    assert await store.read("Observation", "bulk149") is None
    assert (await store.search(_code_query("bulk"))).matches == []
    await save(store, "Observation", "after")  # the store is usable afterwards
    assert await store.read("Observation", "after") is not None
