"""Paired (reference, code/date) index: the driver behind "this patient's readings of this code,
latest first" gives exactly what the per-parameter indexes give, and older stores get it built."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.fhir.index_values import DateValue, IndexValue, ReferenceValue, TokenValue
from fhir_server.fhir.paired_index import pair_values
from fhir_server.search.query import (
    Clause,
    DateCriterion,
    ReferenceCriterion,
    SearchQuery,
    SortKey,
    TokenCriterion,
)
from fhir_server.storage.base import StoredResource, Write
from fhir_server.storage.sqlite.engine import SqliteStorage
from fhir_server.storage.sqlite.schema import SCHEMA_VERSION
from tests.api.conftest import make_settings

LOINC = "http://loinc.org"


def obs(oid: str, patient: str, codes: list[str], when: str | None, device: str = "d1") -> dict:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": c} for c in codes]},
        "subject": {"reference": f"Patient/{patient}"},
        "device": {"reference": f"Device/{device}"},
    }
    if when:
        res["effectiveDateTime"] = when
    return res


WORLD = [
    obs("a1", "p1", ["8867-4"], "2025-03-01T08:00:00Z"),
    obs("a2", "p1", ["8867-4"], "2025-03-05T08:00:00Z"),
    obs("a3", "p1", ["8867-4", "59408-5"], "2025-03-03T08:00:00Z", device="d2"),
    obs("a4", "p1", ["29463-7"], "2025-03-04T08:00:00Z"),
    obs("a5", "p2", ["8867-4"], "2025-03-06T08:00:00Z"),
    obs("a6", "p1", ["8867-4"], None),
    {
        "resourceType": "Observation",
        "id": "a7",
        "status": "final",
        "code": {"coding": [{"code": "8867-4"}]},  # no system
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-02",
    },
]

CASES = {
    "patient=p1&code=8867-4": {"a1", "a2", "a3", "a6", "a7"},
    "patient=Patient/p1&code=http://loinc.org|8867-4": {"a1", "a2", "a3", "a6"},
    "subject=Patient/p1&code=|8867-4": {"a7"},
    "subject:Patient=p1&code=59408-5": {"a3"},
    "patient=p1&code=8867-4&date=ge2025-03-02&date=lt2025-03-05": {"a3", "a7"},
    "patient=p1&date=2025-03-04": {"a4"},
    "device=Device/d1&date=ge2025-03-04": {"a2", "a4", "a5"},
    "device=d2&code=8867-4": {"a3"},
    "patient=p2&code=8867-4&date=lt2025-03-01": set(),
    "patient=p1&code=8867-4,29463-7&date=ge2025-03-04": {"a2", "a4"},  # OR: no pair for code
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as c:
            entries = [
                {"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}}
                for r in WORLD
            ]
            resp = await c.post(
                "", json={"resourceType": "Bundle", "type": "batch", "entry": entries}
            )
            assert resp.status_code == 200
            assert all(e["response"]["status"].startswith("201") for e in resp.json()["entry"])
            yield c


async def _ids(client: httpx.AsyncClient, query: str) -> list[str]:
    r = await client.get(f"Observation?{query}")
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", ())]


@pytest.mark.parametrize("query", list(CASES))
async def test_paired_searches_match_expected(client: httpx.AsyncClient, query: str) -> None:
    assert set(await _ids(client, query)) == CASES[query]
    total = (await client.get(f"Observation?{query}&_total=accurate&_count=1")).json()["total"]
    assert total == len(CASES[query])


async def test_latest_reading_first(client: httpx.AsyncClient) -> None:
    got = await _ids(client, "patient=p1&code=http://loinc.org|8867-4&_sort=-date&_count=1")
    assert got == ["a2"]
    got = await _ids(client, "patient=p1&code=8867-4&_sort=date&_count=2")
    assert got == ["a1", "a7"]


def test_pairs_of_a_resource() -> None:
    values = [
        ReferenceValue("patient", "Patient", "p1"),
        ReferenceValue("encounter", "Encounter", "e1"),  # not paired
        TokenValue("code", LOINC, "8867-4"),
        TokenValue("status", None, "final"),  # not paired
        DateValue("date", 10, 20),
    ]
    pairs = pair_values(values)
    assert {(p.ref_param, p.param, p.code, p.low) for p in pairs} == {
        ("patient", "code", "8867-4", 10),
        ("patient", "date", None, 10),
    }
    assert pair_values(values[:2]) == []  # nothing to pair the reference with


async def test_several_dates_are_not_required_to_match_one_value(tmp_path: Path) -> None:
    """Two date conditions met by two different date values of one resource still match."""
    storage = SqliteStorage(tmp_path / "f.db")
    await storage.open()
    try:
        body = b'{"resourceType":"Observation","id":"m"}'
        index = [
            ReferenceValue("patient", "Patient", "p1"),
            DateValue("date", 100, 200),
            DateValue("date", 500, 600),
        ]
        async with storage.transaction() as tx:
            await tx.write(
                Write(StoredResource("Observation", "m", 1, 1, False, body), index, 0, "PUT")
            )
        query = SearchQuery(
            resource_types=("Observation",),
            clauses=(
                Clause((ReferenceCriterion("patient", None, "p1"),)),
                Clause((DateCriterion("date", "lt", 150, 151),)),
                Clause((DateCriterion("date", "gt", 550, 551),)),
            ),
        )
        page = await storage.search(query)
        assert [m.id for m in page.matches] == ["m"]
    finally:
        await storage.close()


@asynccontextmanager
async def _server(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server on the store under `tmp_path`, started afresh (as after a restart)."""
    app = create_app(make_settings(tmp_path))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as c:
            yield c


def _make_older(tmp_path: Path, version: int, *statements: str) -> sqlite3.Connection:
    """Turn the store into one of schema `version`; the returned connection reads it later."""
    db = tmp_path / "data" / "fhir.db"
    conn = sqlite3.connect(db)
    for sql in statements:
        conn.execute(sql)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    conn.commit()
    conn.close()
    return sqlite3.connect(db)


async def test_version_1_store_gets_its_pairs_at_open(tmp_path: Path) -> None:
    async with _server(tmp_path) as c:
        for r in WORLD:
            assert (await c.put(f"Observation/{r['id']}", json=r)).status_code == 201
    conn = _make_older(tmp_path, 1, "DELETE FROM idx_pair")
    async with _server(tmp_path) as c:
        for query, expected in CASES.items():
            assert set(await _ids(c, query)) == expected, query
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)
    conn.close()


async def test_version_2_store_gets_a_partial_url_index(tmp_path: Path) -> None:
    """Schema 3 keeps only rows with a url in idx_reference_url; an older store's full index is
    rebuilt at open, and url searches still use it."""
    url = "http://elsewhere.example/fhir/Patient/p9"
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": url},
    }
    async with _server(tmp_path) as c:
        assert (await c.put("Observation/o1", json=obs)).status_code == 201
    conn = _make_older(
        tmp_path,
        2,
        "DROP INDEX idx_reference_url",
        "CREATE INDEX idx_reference_url ON idx_reference (type, param, url, pk)",
    )
    async with _server(tmp_path) as c:
        assert await _ids(c, f"subject={url}") == ["o1"]
    (sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'idx_reference_url'"
    ).fetchone()
    assert "WHERE url IS NOT NULL" in sql
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT pk FROM idx_reference WHERE type = ? AND param = ? AND url = ?",
        ("Observation", "subject", "u"),
    ).fetchall()
    assert "idx_reference_url" in str(plan)
    conn.close()


async def test_chained_reference_pairs_with_code(client: httpx.AsyncClient) -> None:
    for pid, family in (("p1", "Ames"), ("p2", "Bose")):
        r = await client.put(
            f"Patient/{pid}",
            json={"resourceType": "Patient", "id": pid, "name": [{"family": family}]},
        )
        assert r.status_code == 201
    got = await _ids(client, "subject:Patient.family=Ames&code=http://loinc.org|8867-4")
    assert set(got) == {"a1", "a2", "a3", "a6"}
    got = await _ids(client, "patient.family=Bose&code=8867-4&date=ge2025-03-06")
    assert got == ["a5"]


async def test_sorting_on_the_paired_date_with_several_dates(tmp_path: Path) -> None:
    """A resource with several dates sorts by its latest (desc) or earliest (asc) one."""
    storage = SqliteStorage(tmp_path / "f.db")
    await storage.open()
    try:
        spans = {"m": [(100, 200), (900, 950)], "s1": [(500, 600)], "s2": [(300, 400)]}
        async with storage.transaction() as tx:
            for rid, dates in spans.items():
                body = b'{"resourceType":"Observation"}'
                index = [
                    ReferenceValue("patient", "Patient", "p1"),
                    TokenValue("code", LOINC, "x"),
                    *(DateValue("date", lo, hi) for lo, hi in dates),
                ]
                stored = StoredResource("Observation", rid, 1, 1, False, body)
                await tx.write(Write(stored, index, 0, "PUT"))
        clauses = (
            Clause((ReferenceCriterion("patient", None, "p1"),)),
            Clause((TokenCriterion("code", LOINC, "x"),)),
        )
        for descending, expected in ((True, ["m", "s1", "s2"]), (False, ["m", "s2", "s1"])):
            query = SearchQuery(
                resource_types=("Observation",),
                clauses=clauses,
                sort=(SortKey("date", "date", descending),),
            )
            page = await storage.search(query)
            assert [m.id for m in page.matches] == expected
    finally:
        await storage.close()


async def test_new_stores_opened_by_several_at_once_open(tmp_path: Path) -> None:
    """Switching a new file to WAL answers "database is locked" at once while another connection
    does the same; opening must wait for it, not fail (it did in about one round in ten)."""
    for round in range(25):
        db = tmp_path / f"new{round}.db"
        engines = [SqliteStorage(db) for _ in range(4)]
        await asyncio.gather(*(e.open() for e in engines))
        for e in engines:
            await e.close()


async def test_stores_opened_together_agree_on_the_schema(tmp_path: Path) -> None:
    """Workers open one store at once: a new store is made once, an old one migrated once."""
    db = tmp_path / "f.db"
    for _ in range(3):  # a new store, opened by three at once
        engines = [SqliteStorage(db) for _ in range(3)]
        await asyncio.gather(*(e.open() for e in engines))
        for e in engines:
            await e.close()
    one = SqliteStorage(db)
    await one.open()
    async with one.transaction() as tx:
        body = b'{"resourceType":"Observation"}'
        index: list[IndexValue] = [
            ReferenceValue("patient", "Patient", "p1"),
            TokenValue("code", LOINC, "x"),
        ]
        await tx.write(
            Write(StoredResource("Observation", "o", 1, 1, False, body), index, 0, "PUT")
        )
    await one.close()
    conn = sqlite3.connect(db)
    pairs = conn.execute("SELECT count(*) FROM idx_pair").fetchone()[0]
    conn.execute("DELETE FROM idx_pair")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    engines = [SqliteStorage(db) for _ in range(3)]  # an old store, opened by three at once
    await asyncio.gather(*(e.open() for e in engines))
    for e in engines:
        await e.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM idx_pair").fetchone()[0] == pairs > 0
    conn.close()
