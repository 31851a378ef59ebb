"""The validation pool: verdicts as inline, workers below the server's CPU priority, and the
default size that leaves the server process a core."""

from __future__ import annotations

import os
from typing import Any

import pytest

from fhir_server.interactions.validation_pool import MIN_BATCH, ValidationPool, _check_chunk
from fhir_server.settings import Settings, default_validation_processes


def _worker_niceness() -> int:
    return os.nice(0)


def _resources() -> list[dict[str, Any]]:
    good = {"resourceType": "Patient", "id": "ok", "gender": "female"}
    bad = {"resourceType": "Patient", "id": "bad", "gender": "sometimes"}
    return [dict(good, id=f"p{i}") for i in range(MIN_BATCH)] + [bad]


async def test_pool_gives_the_inline_verdicts_from_lower_priority_workers() -> None:
    pool = ValidationPool(1)
    pool.start()
    try:
        assert pool._executor is not None
        worker = pool._executor.submit(_worker_niceness).result(timeout=60)
        assert worker > os.nice(0)  # the server process keeps the CPU when both want it
        resources = _resources()
        assert await pool.check_many(resources) == _check_chunk(resources)
        assert (await pool.check_many(resources))[-1]  # the bad gender is found
    finally:
        pool.shutdown()


def test_default_leaves_one_core_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_SERVER_VALIDATION_PROCESSES", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert default_validation_processes() == max(1, cores - 1)
    assert Settings().validation_processes == max(1, cores - 1)
    monkeypatch.setenv("FHIR_SERVER_VALIDATION_PROCESSES", "0")
    assert Settings().validation_processes == 0
