"""The SQLite writer leaves WAL checkpoints to a thread of their own (`checkpoint.py`): the pages
still reach the database file, and the WAL does not grow without bound."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fhir_server.fhir.index_values import IndexValue, TokenValue
from fhir_server.storage.base import StoredResource, Write
from fhir_server.storage.sqlite import checkpoint
from fhir_server.storage.sqlite.engine import SqliteStorage


async def _write_round(storage: SqliteStorage, round: int, n: int = 400) -> None:
    async with storage.transaction() as tx:
        for i in range(n):
            body = b'{"resourceType":"Observation","note":"' + b"x" * 1500 + b'"}'
            index: list[IndexValue] = [TokenValue("code", "http://loinc.org", f"c{i % 50}")]
            stored = StoredResource("Observation", f"o{round}-{i}", 1, 1, False, body)
            await tx.write(Write(stored, index, 0, "POST"))


async def _until(condition: object, timeout_s: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_checkpoints_reach_the_database_file_and_bound_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    wal = tmp_path / "c.db-wal"
    storage = SqliteStorage(db)
    await storage.open()
    try:
        assert storage._writer_conn().execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        start = db.stat().st_size
        await _write_round(storage, 0)
        assert await _until(lambda: db.stat().st_size > start + 400 * 1500), (
            "the pages never reached the database file"
        )
        one_round = os.path.getsize(wal)
        for round in range(1, 12):
            await _write_round(storage, round)
            await asyncio.sleep(checkpoint.MIN_INTERVAL_S * 2)
        assert os.path.getsize(wal) < 4 * one_round, "the WAL keeps growing"
    finally:
        await storage.close()
    reopened = SqliteStorage(db)
    await reopened.open()
    try:
        assert await reopened.count("Observation") == 12 * 400
    finally:
        await reopened.close()
