"""Internal records and leases: the primitives background work (exports, notifications) uses to
run once across processes, and the outbox written atomically with a transaction."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from pathlib import Path

import pytest

from fhir_server.storage.base import Storage
from fhir_server.storage.sqlite.engine import SqliteStorage

# On every storage engine (tests/storage/engines.py); the last test is SQLite's own.
pytestmark = pytest.mark.all_engines


@pytest.fixture
def storage(store: Storage) -> Storage:
    return store


async def test_records_put_get_list_delete(storage: Storage) -> None:
    await storage.put_record("job", "b", {"n": 2})
    await storage.put_record("job", "a", {"n": 1})
    await storage.put_record("other", "a", {"n": 9})
    await storage.put_record("job", "a", {"n": 3})  # replaces
    got = await storage.get_record("job", "a")
    assert got is not None and got.doc == {"n": 3}
    assert [r.key for r in await storage.list_records("job")] == ["a", "b"]
    assert [r.key for r in await storage.list_records("job", after_key="a")] == ["b"]
    assert [r.key for r in await storage.list_records("job", limit=1)] == ["a"]
    assert await storage.delete_record("job", "a") is True
    assert await storage.delete_record("job", "a") is False
    assert await storage.get_record("job", "a") is None


async def test_outbox_record_rolls_back_with_its_transaction(storage: Storage) -> None:
    with pytest.raises(RuntimeError):
        async with storage.transaction() as tx:
            await tx.put_record("outbox", "1", {"x": 1})
            raise RuntimeError("abort")
    assert await storage.get_record("outbox", "1") is None
    async with storage.transaction() as tx:
        await tx.put_record("outbox", "2", {"x": 2})
    assert await storage.get_record("outbox", "2") is not None


async def test_lease_is_exclusive_until_released_or_expired(storage: Storage) -> None:
    assert await storage.acquire_lease("export", "p1", 30)
    assert not await storage.acquire_lease("export", "p2", 30)
    assert await storage.acquire_lease("export", "p1", 30)  # renewal
    await storage.release_lease("export", "p2")  # not the owner: no effect
    assert not await storage.acquire_lease("export", "p2", 30)
    await storage.release_lease("export", "p1")
    assert await storage.acquire_lease("export", "p2", 0.05)
    await asyncio.sleep(0.1)
    assert await storage.acquire_lease("export", "p1", 30)  # p2's expired


async def test_lease_shared_across_engines_on_one_file(tmp_path: Path) -> None:
    one, two = SqliteStorage(tmp_path / "f.db"), SqliteStorage(tmp_path / "f.db")
    await one.open()
    await two.open()
    try:
        results = await asyncio.gather(
            *(s.acquire_lease("job", f"o{i % 2}", 30) for i, s in enumerate([one, two] * 4))
        )
        assert sum(results) == 4  # every call of the winner renews; the other owner never wins
        assert len({i % 2 for i, ok in enumerate(results) if ok}) == 1
    finally:
        await one.close()
        await two.close()


# Cancelling a MongoDB operation mid-flight can leave PyMongo's socket for the garbage collector,
# whose ResourceWarning then surfaces as an unraisable exception in whatever runs at that moment.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_cancellation_after_release_stays_a_cancellation(storage: SqliteStorage) -> None:
    """A task cancelled while its transaction's RELEASE runs gets its CancelledError back (not a
    'no such savepoint' error from the rollback)."""
    for delay in [i / 10_000 for i in range(40)]:  # 0 to 4 ms: hit the RELEASE window

        async def write(key: str) -> None:
            async with storage.transaction() as tx:
                await tx.put_record("job", key, {"x": 1})

        task = asyncio.create_task(write(f"k{delay}"))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # anything else fails the test
            await task
    assert await storage.acquire_lease("after", "me", 1)  # the engine still works
    with warnings.catch_warnings():  # collect the abandoned sockets here, not in the next test
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
