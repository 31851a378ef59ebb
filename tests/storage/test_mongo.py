"""What only the MongoDB engine has: URL selection, replica-set detection, idempotent indexes,
several server processes on one database, and refusing transaction Bundles on a standalone mongod.

The database tests run on the real MongoDB when FHIR_SERVER_TEST_MONGODB_URI is set, else on the
mongoeco stand-in (not a real MongoDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.fhir.index_values import ReferenceValue, TokenValue
from fhir_server.search.query import (
    Clause,
    QuantityCriterion,
    SearchQuery,
    TokenCriterion,
    TokenSetCriterion,
)
from fhir_server.storage.base import HistoryQuery, VersionConflict
from fhir_server.storage.factory import StorageConfigError, create_storage
from fhir_server.storage.mongo import MongoStorage
from fhir_server.storage.mongo.criteria import CriteriaCompiler, text_filter
from fhir_server.storage.mongo.documents import index_fields, patient_compartment, words
from fhir_server.storage.mongo.engine import database_name, supports_transactions
from fhir_server.storage.mongo.indexes import HISTORY_INDEXES, RESOURCE_INDEXES
from fhir_server.storage.mongo.transaction import TransactionsUnsupported
from tests.api.conftest import make_settings
from tests.storage.engines import (
    REAL_URI,
    STANDIN,
    StandIn,
    _drop,
    mongo_database,
    with_database,
)
from tests.storage.helpers import remove, save, save_in

# -- pure parts ----------------------------------------------------------------------------------


def test_storage_url_selects_the_engine_and_names_the_database(tmp_path: Path) -> None:
    for url, name in [
        ("mongodb://db1:27017,db2:27017/clinic?replicaSet=rs0", "clinic"),
        ("mongodb://localhost", "fhir"),
        ("mongodb://localhost/", "fhir"),
        ("mongodb+srv://user:pw@cluster.example.org/rpm?retryWrites=true", "rpm"),
    ]:
        storage = create_storage(make_settings(tmp_path, storage=url))
        assert isinstance(storage, MongoStorage) and storage.db_name == name
        assert database_name(url) == name
    with pytest.raises(StorageConfigError):
        create_storage(make_settings(tmp_path, storage="postgres://x/y"))


def test_replica_set_detection() -> None:
    assert supports_transactions({"setName": "rs0", "isWritablePrimary": True})
    assert supports_transactions({"msg": "isdbgrid"})  # mongos in front of a sharded cluster
    assert not supports_transactions({"isWritablePrimary": True})


def test_search_values_are_arrays_for_multikey_indexes() -> None:
    fields = index_fields([TokenValue("code", "http://loinc.org", "8867-4"),
                           TokenValue("code", None, None, "heart rate")])  # fmt: skip
    assert fields["tk"] == [
        {"p": "code", "s": "http://loinc.org", "c": "8867-4"},
        {"p": "code", "x": "heart rate"},
    ]
    assert fields["so"] == {"code": {"a": "8867-4", "z": "8867-4"}}
    assert words("Ánna-María O'Neil") == ["anna", "maria", "o", "neil"]
    assert text_filter("wn", "ann OR bo") == {
        "$or": [{"$and": [{"wn": {"$regex": "^ann"}}]}, {"$and": [{"wn": {"$regex": "^bo"}}]}]
    }
    subject = [ReferenceValue("subject", "Patient", "p1")]
    assert patient_compartment("Observation", "o1", subject) == "Patient/p1"
    assert patient_compartment("Patient", "p1", []) == "Patient/p1"
    assert patient_compartment("Organization", "x", []) == "Organization/x"


async def test_token_criterion_compiles_to_one_elem_match() -> None:
    async def never(*_: object) -> list[tuple[str, str]]:
        raise AssertionError("no inner query expected")

    compiler = CriteriaCompiler(("Observation",), never, never)
    where = await compiler.where((Clause((TokenCriterion("code", "http://loinc.org", "1"),)),))
    assert where == {"tk": {"$elemMatch": {"p": "code", "c": "1", "s": "http://loinc.org"}}}


def test_every_query_shape_has_an_index() -> None:
    keys = {tuple(k for k, _ in m.document["key"].items()) for m in RESOURCE_INDEXES}
    for array, value in [("tk", "c"), ("st", "n"), ("dt", "lo"), ("nm", "v"), ("qt", "v"),
                         ("rf", "ri"), ("ur", "u"), ("cp", "c1")]:  # fmt: skip
        assert any(k[:3] == ("t", f"{array}.p", f"{array}.{value}") for k in keys), array
    assert {m.document["name"] for m in HISTORY_INDEXES} == {"instance", "type", "system"}


# -- on a MongoDB (real, or the stand-in) ----------------------------------------------------------


@pytest.fixture
def mongo_url(request: pytest.FixtureRequest) -> Iterator[str]:
    uri = mongo_database(request, "mongodb" if REAL_URI else STANDIN)
    yield uri
    _drop(uri)


@pytest.fixture
async def two_processes(mongo_url: str) -> AsyncIterator[tuple[MongoStorage, MongoStorage]]:
    """Two engines on one database stand in for two server processes."""
    a, b = MongoStorage(mongo_url), MongoStorage(mongo_url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_indexes_are_created_idempotently(
    two_processes: tuple[MongoStorage, MongoStorage],
) -> None:
    a, b = two_processes
    await b.close()
    await b.open()  # a second start-up against the same database changes nothing
    names = {ix["name"] async for ix in await a.resources.list_indexes()}
    assert {m.document["name"] for m in RESOURCE_INDEXES} <= names
    assert a.transactions  # the stand-in is started as a replica set member


async def test_two_processes_updating_one_resource_never_lose_a_write(
    two_processes: tuple[MongoStorage, MongoStorage],
) -> None:
    a, b = two_processes
    await save(a, "Patient", "shared")
    ok = {"a": 0, "b": 0}

    async def update(store: MongoStorage, who: str, n: int) -> None:
        for _ in range(n):
            try:
                await save(store, "Patient", "shared")
                ok[who] += 1
            except VersionConflict:
                pass  # the other process won this round: reported, nothing lost

    await asyncio.gather(update(a, "a", 6), update(b, "b", 6))
    current = await a.read("Patient", "shared")
    assert current is not None and current.version == 1 + ok["a"] + ok["b"]
    page = await b.history(HistoryQuery("Patient", "shared", count=100))
    assert page.total == current.version
    assert [e.resource.version for e in page.entries] == list(range(current.version, 0, -1))


async def test_lease_is_exclusive_across_processes(
    two_processes: tuple[MongoStorage, MongoStorage],
) -> None:
    a, b = two_processes
    results = await asyncio.gather(
        *(s.acquire_lease("job", f"o{i % 2}", 30) for i, s in enumerate([a, b] * 3))
    )
    winners = {i % 2 for i, held in enumerate(results) if held}
    assert len(winners) == 1
    owner = f"o{winners.pop()}"
    other = "o1" if owner == "o0" else "o0"
    await a.release_lease("job", owner)
    assert await b.acquire_lease("job", other, 30)


# -- a standalone mongod: transaction Bundles refused ---------------------------------------------


@pytest.fixture(scope="module")
def standalone() -> Iterator[StandIn]:
    server = StandIn(replset=None)
    if server.problem:
        pytest.skip(server.problem)
    yield server
    server.stop()


async def test_standalone_refuses_multi_resource_transactions(standalone: StandIn) -> None:
    uri = with_database(standalone.uri, "fhir_standalone")
    store = MongoStorage(uri)
    await store.open()
    try:
        assert not store.transactions
        await save(store, "Patient", "single")  # one resource: two ordered single writes
        code = [TokenValue("code", "s", "c")]
        with pytest.raises(TransactionsUnsupported, match="replica set"):
            async with store.transaction() as tx:
                await save_in(tx, "Patient", "x1")
                await save_in(tx, "Observation", "x2", code)
        assert await store.read("Patient", "x1") is None
        found = await store.search(
            SearchQuery(("Observation",), (Clause((TokenCriterion("code", "s", "c"),)),))
        )
        assert found.matches == []
    finally:
        await store.drop()
        await store.close()


async def test_standalone_transaction_bundle_is_an_operation_outcome(
    standalone: StandIn, tmp_path: Path
) -> None:
    uri = with_database(standalone.uri, "fhir_standalone_api")
    app = create_app(make_settings(tmp_path, storage=uri))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as client:
            entries = [
                {
                    "resource": {"resourceType": "Patient"},
                    "request": {"method": "POST", "url": "Patient"},
                }
                for _ in range(2)
            ]
            r = await client.post(
                "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
            )
            assert r.status_code == 501, r.text
            outcome = r.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert "replica set" in outcome["issue"][0]["diagnostics"]
            r = await client.post(
                "", json={"resourceType": "Bundle", "type": "batch", "entry": entries}
            )
            assert r.status_code == 200
            assert [e["response"]["status"] for e in r.json()["entry"]] == ["201"] * 2
    _drop(uri)


async def test_standalone_refuses_every_transaction_bundle_and_does_not_advertise_it(
    standalone: StandIn, tmp_path: Path
) -> None:
    """A one-entry (or empty) transaction Bundle is refused too; `transaction` is not listed."""
    uri = with_database(standalone.uri, "fhir_standalone_one")
    app = create_app(make_settings(tmp_path, storage=uri))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as client:
            one = [{"resource": {"resourceType": "Patient"},
                    "request": {"method": "POST", "url": "Patient"}}]  # fmt: skip
            for entries in (one, []):
                r = await client.post(
                    "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
                )
                assert r.status_code == 501, r.text
                assert r.json()["resourceType"] == "OperationOutcome"
                assert r.json()["issue"][0]["code"] == "not-supported"
                assert "replica set" in r.json()["issue"][0]["diagnostics"]
            r = await client.get("Patient")
            assert r.json().get("total", 0) == 0  # nothing was written
            r = await client.post(
                "", json={"resourceType": "Bundle", "type": "batch", "entry": one}
            )
            assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"] == "201"
            cap = (await client.get("metadata")).json()
            codes = [i["code"] for i in cap["rest"][0]["interaction"]]
            assert "transaction" not in codes and "batch" in codes
    _drop(uri)


async def test_replica_set_advertises_transaction(mongo_url: str, tmp_path: Path) -> None:
    """On a replica set (the stand-in's default) `transaction` is listed; so it is on SQLite."""
    for settings in (make_settings(tmp_path, storage=mongo_url), make_settings(tmp_path / "s")):
        app = create_app(settings)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as c:
                cap = (await c.get("metadata")).json()
                assert {"code": "transaction"} in cap["rest"][0]["interaction"]


def test_standin_runs_are_labelled() -> None:
    assert "not-real-mongodb" in STANDIN


async def test_shard_key_follows_the_patient_and_stays_on_delete(
    two_processes: tuple[MongoStorage, MongoStorage],
) -> None:
    a, _ = two_processes
    await save(a, "Observation", "o", [ReferenceValue("subject", "Patient", "p1")])
    await save(a, "Observation", "o", [ReferenceValue("subject", "Patient", "p2")])
    doc = await a.resources.find_one({"_id": "Observation/o"})
    assert doc is not None and doc["pc"] == "Patient/p2" and doc["v"] == 2
    await remove(a, "Observation", "o")
    doc = await a.resources.find_one({"_id": "Observation/o"})
    assert doc is not None and doc["pc"] == "Patient/p2" and doc["d"] is True


async def test_alternatives_on_one_element_become_separate_elem_matches() -> None:
    """No `$or` inside an `$elemMatch` (each alternative can use the index on its own)."""

    async def never(*_: object) -> list[tuple[str, str]]:
        raise AssertionError("no inner query expected")

    compiler = CriteriaCompiler(("Observation",), never, never)
    unit = QuantityCriterion("value-quantity", "gt", 5, 4.5, 5.5, None, "mg")
    where = await compiler.where((Clause((unit,)),))
    assert where == {
        "$or": [
            {"qt": {"$elemMatch": {"p": "value-quantity", "v": {"$gt": 5}, "c": "mg"}}},
            {"qt": {"$elemMatch": {"p": "value-quantity", "v": {"$gt": 5}, "u": "mg"}}},
        ]
    }
    negated = TokenSetCriterion("code", (("s", "a"), (None, "b")), negate=True)
    where = await compiler.where((Clause((negated,)),))
    assert where == {
        "$nor": [
            {"tk": {"$elemMatch": {"p": "code", "s": "s", "c": "a"}}},
            {"tk": {"$elemMatch": {"p": "code", "c": {"$in": ["b"]}}}},
        ]
    }
