"""SQLite runs cheap searches on the event loop under a step budget and moves the others to a
reader thread: both paths give the same page."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.fhir.index_values import IndexValue, ReferenceValue, TokenValue
from fhir_server.search.query import Clause, ReferenceCriterion, SearchQuery, TokenCriterion
from fhir_server.storage.base import StoredResource, Write
from fhir_server.storage.sqlite import engine as sqlite_engine
from fhir_server.storage.sqlite.engine import SqliteStorage


async def _fill(storage: SqliteStorage, n: int) -> None:
    async with storage.transaction() as tx:
        for i in range(n):
            body = b'{"resourceType":"Observation"}'
            index: list[IndexValue] = [
                ReferenceValue("subject", "Patient", f"p{i % 3}"),
                TokenValue("status", None, "final" if i % 2 else "amended"),
            ]
            stored = StoredResource("Observation", f"o{i}", 1, 1, False, body)
            await tx.write(Write(stored, index, 0, "PUT"))


@pytest.mark.parametrize("ticks", [0, 1, 20, 10_000])
async def test_budget_exhaustion_falls_back_to_a_reader_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ticks: int
) -> None:
    monkeypatch.setattr(sqlite_engine, "_LOOP_SEARCH_TICKS", ticks)
    storage = SqliteStorage(tmp_path / "f.db")
    await storage.open()
    try:
        await _fill(storage, 3000)
        hops = 0
        on_reader = storage._on_reader

        async def counting(fn):  # type: ignore[no-untyped-def]
            nonlocal hops
            hops += 1
            return await on_reader(fn)

        monkeypatch.setattr(storage, "_on_reader", counting)
        query = SearchQuery(
            resource_types=("Observation",),
            clauses=(
                Clause((ReferenceCriterion("subject", None, "p1"),)),
                Clause((TokenCriterion("status", None, "final", any_system=True),)),
            ),
            count=5,
            total="accurate",
        )
        page = await storage.search(query)
        assert page.total == 500  # i % 3 == 1 and i odd: i = 1, 7, 13, ... < 3000
        assert [m.id for m in page.matches] == ["o1", "o7", "o13", "o19", "o25"]
        assert hops == (0 if ticks == 10_000 else 1)  # a big budget keeps it on the loop
    finally:
        await storage.close()
