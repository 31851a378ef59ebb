"""SQLite group commit: a commit waits (a bounded while) for writers announced by
`storage.base.write_coming`, so that their changes go to disk in one commit; unannounced writes
never wait."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.storage.base import write_coming
from fhir_server.storage.sqlite import transaction as sqlite_transaction
from fhir_server.storage.sqlite.engine import SqliteStorage
from tests.storage.helpers import save


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(tmp_path / "g.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _count_commits(storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    commits: list[int] = []
    group = storage._group
    original = group._commit_physical

    def counting() -> None:
        commits.append(1)
        original()

    monkeypatch.setattr(group, "_commit_physical", counting)
    return commits


async def test_a_commit_waits_for_an_announced_writer_and_carries_both(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_transaction, "COMMIT_WAIT_S", 5.0)
    commits = _count_commits(storage, monkeypatch)
    coming = write_coming(storage)
    coming.__enter__()
    first = asyncio.create_task(save(storage, "Patient", "a"))
    await asyncio.sleep(0.2)
    assert not first.done(), "the first write was acknowledged before its commit could carry both"
    assert commits == []
    coming.__exit__(None, None, None)
    await save(storage, "Patient", "b")
    await asyncio.wait_for(first, 5)
    assert commits == [1]
    assert await storage.read("Patient", "a") is not None
    assert await storage.read("Patient", "b") is not None


async def test_the_wait_for_an_announced_writer_is_bounded(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_transaction, "COMMIT_WAIT_S", 0.05)
    commits = _count_commits(storage, monkeypatch)
    with write_coming(storage):  # announced, never arrives
        await asyncio.wait_for(save(storage, "Patient", "a"), 5)
        assert commits == [1]


async def test_unannounced_writes_commit_at_once(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_transaction, "COMMIT_WAIT_S", 60.0)
    commits = _count_commits(storage, monkeypatch)
    await asyncio.wait_for(save(storage, "Patient", "a"), 5)
    await asyncio.wait_for(save(storage, "Patient", "b"), 5)
    assert commits == [1, 1]


def test_engines_without_the_hint_get_a_block_that_does_nothing() -> None:
    class Engine:
        pass

    class Wrapper:
        def __init__(self, inner: object) -> None:
            self.inner = inner

    with write_coming(Wrapper(Engine())):
        pass


async def test_the_lock_is_free_while_a_commit_runs(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next transaction prepares while the commit before it is on the disk; its own work
    runs after that commit, and it is acknowledged by a commit of its own."""
    gate = threading.Event()
    commits = _count_commits(storage, monkeypatch)
    counted = storage._group._commit_physical

    started = threading.Event()

    def held() -> None:
        if not started.is_set():
            started.set()
            assert gate.wait(10)
        counted()

    monkeypatch.setattr(storage._group, "_commit_physical", held)
    first = asyncio.create_task(save(storage, "Patient", "a"))
    assert await asyncio.to_thread(started.wait, 5)  # the first commit waits on the gate
    assert not first.done()
    await asyncio.wait_for(storage._group._lock.acquire(), 2)  # not held by the flush
    storage._group._lock.release()
    second = asyncio.create_task(save(storage, "Patient", "b"))
    await asyncio.sleep(0.1)
    assert not second.done()
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert commits == [1, 1]
    assert await storage.read("Patient", "b") is not None
