"""The outbox is written with the triggering write: rolled back with it, swept when orphaned."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fhir_server.subscriptions.matching import OUTBOX, outbox_key
from tests.subscriptions.conftest import Server, running, sub_settings, vital
from tests.subscriptions.receiver import Receiver

VITALS = "Observation?category=vital-signs"


async def test_a_rolled_back_transaction_leaves_no_notification(
    server: Server, receiver: Receiver
) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "active")
    receiver.status = 503  # keep anything queued in the outbox, where the test can see it
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": vital()},
            {  # fails: version 3 of a resource that does not exist
                "request": {"method": "PUT", "url": "Observation/nope", "ifMatch": 'W/"3"'},
                "resource": {**vital(), "id": "nope"},
            },
        ],
    }
    r = await server.client.post("", json=bundle)
    assert r.status_code == 412, r.text
    assert await server.services.storage.list_records(OUTBOX) == []
    assert not (await server.client.get("/Observation")).json().get("entry")
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1  # the handshake only


async def test_a_committed_write_is_queued_in_the_same_transaction(
    server: Server, receiver: Receiver
) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "active")
    receiver.status = 503
    obs = await server.create(vital())
    [record] = await server.services.storage.list_records(OUTBOX)
    assert record.key.startswith(f"{sid}/")
    assert record.doc["type"] == "Observation" and record.doc["id"] == obs["id"]
    assert record.doc["version"] == 1


async def test_turning_a_subscription_off_stops_notifications(
    server: Server, receiver: Receiver
) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    sub = await server.wait_status(sid, "active")
    r = await server.client.put(f"/Subscription/{sid}", json={**sub, "status": "off"})
    assert r.status_code == 200
    await asyncio.sleep(0.6)  # past the cache refresh of the test settings
    await server.create(vital())
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1
    assert (await server.subscription(sid))["status"] == "off"


async def test_queued_notifications_of_deleted_subscriptions_are_swept(
    server: Server, receiver: Receiver
) -> None:
    from fhir_server.subscriptions.worker import DeliveryWorker

    storage = server.services.storage
    await storage.put_record(OUTBOX, outbox_key("gone", 1), {"subscription": "gone"})
    await storage.put_record(OUTBOX, outbox_key("zzz", 1), {"subscription": "zzz"})
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "active")
    receiver.status = 503
    await server.create(vital())  # stays queued for a live subscription
    worker = DeliveryWorker(server.services, server.services.write_hooks)  # type: ignore[arg-type]
    await worker._sweep(set())
    assert [r.key.split("/")[0] for r in await storage.list_records(OUTBOX)] == [sid]


async def test_an_ended_subscription_is_turned_off(server: Server, receiver: Receiver) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    sub = await server.wait_status(sid, "active")
    r = await server.client.put(f"/Subscription/{sid}", json={**sub, "end": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200
    await server.wait_status(sid, "off")


class _NoStorage:
    """A transaction that fails on any use: proves a hook did no storage work."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the write hook used the transaction ({name})")


async def test_without_live_subscriptions_a_write_does_no_extra_storage_work(
    tmp_path: Path,
) -> None:
    from fhir_server.storage.base import StoredResource, Transaction, Write

    async with running(sub_settings(tmp_path, subscription_refresh_seconds=60)) as server:
        await server.create(vital())  # loads the (empty) cache of live subscriptions
        hooks = server.services.write_hooks
        assert hooks is not None
        tx: Transaction = _NoStorage()  # type: ignore[assignment]
        write = Write(StoredResource("Observation", "x", 1, 1, False, b"{}"), (), 0, "POST")
        for _ in range(1000):
            await hooks.before_write(tx, write)
            await hooks.after_write(tx, write)
