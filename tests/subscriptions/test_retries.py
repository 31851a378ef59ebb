"""Failures: retries with backoff, `error` with the reason, recovery to `active`, restarts."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from fhir_server.subscriptions.matching import OUTBOX
from fhir_server.subscriptions.worker import RetryPolicy
from tests.subscriptions.conftest import Server, running, sub_settings, vital
from tests.subscriptions.receiver import Receiver

VITALS = "Observation?category=vital-signs"


def test_default_policy_reaches_error_within_about_a_minute() -> None:
    policy = RetryPolicy()  # the defaults of the settings: 5 attempts, 1 s doubling
    waits = [policy.delay(n) for n in range(1, 5)]
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert sum(waits) == 15.0  # the 5th failure (error) 15 s after the first, plus timeouts
    assert policy.delay(5) == policy.delay(9) == 60.0  # then a slow pace


async def test_failing_endpoint_turns_error_then_recovers(
    server: Server, receiver: Receiver
) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "active")
    receiver.status = 503
    await server.create(vital())
    sub = await server.wait_status(sid, "error")
    assert "503" in sub["error"]
    attempts = len(receiver.requests) - 1
    assert attempts == 3  # FAST: 3 attempts before error
    await asyncio.sleep(0.4)  # slow retries continue (every 0.3 s in the tests)
    assert len(receiver.requests) - 1 > attempts
    receiver.status = 200
    sub = await server.wait_status(sid, "active")
    assert "error" not in sub
    assert receiver.requests[-1].method == "POST"
    # the notification was retried until accepted, then removed
    assert await server.services.storage.list_records(OUTBOX) == []


async def test_unreachable_endpoint_reason_names_the_connection_error(server: Server) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sid = await server.subscribe(f"http://127.0.0.1:{port}/hook", VITALS)
    sub = await server.wait_status(sid, "error")
    assert "ConnectError" in sub["error"], sub["error"]


async def test_error_subscription_with_nothing_queued_is_probed_back_to_active(
    server: Server, receiver: Receiver
) -> None:
    receiver.status = 500
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "error")  # the handshake failed
    receiver.status = 200
    await server.wait_status(sid, "active")


async def test_outbox_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    settings = sub_settings(tmp_path)
    async with running(settings) as first:
        sid = await first.subscribe(receiver.url, VITALS)
        await first.wait_status(sid, "active")
        receiver.status = 503
        obs = await first.create(vital())
        await receiver.wait_for(2)  # one failed attempt; the notification stays queued
    assert len(await _outbox(tmp_path)) == 1
    receiver.status = 200
    before = len(receiver.requests)
    async with running(settings) as second:
        note = (await receiver.wait_for(before + 1))[-1]
        assert note.method == "POST"
        await second.wait_status(sid, "active")
        for _ in range(50):
            if not await second.services.storage.list_records(OUTBOX):
                break
            await asyncio.sleep(0.02)
        assert await second.services.storage.list_records(OUTBOX) == []
    assert obs["id"]


async def _outbox(tmp_path: Path) -> list[object]:
    from fhir_server.storage.sqlite.engine import SqliteStorage

    storage = SqliteStorage(tmp_path / "data" / "fhir.db")
    await storage.open()
    try:
        return list(await storage.list_records(OUTBOX))
    finally:
        await storage.close()


async def test_two_processes_deliver_each_notification_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = sub_settings(tmp_path)
    async with running(settings) as one, running(settings) as two:
        sid = await one.subscribe(receiver.url, VITALS)
        await one.wait_status(sid, "active")
        for i in range(6):
            await (one if i % 2 else two).create(vital(value=60 + i))
        await receiver.wait_for(7)
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 7  # handshake + 6: the lease holder alone delivers
