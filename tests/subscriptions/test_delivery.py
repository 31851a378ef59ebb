"""Rest-hook delivery end to end: activation, matching, payload variants, headers."""

from __future__ import annotations

import asyncio
import json

from fhir_server.subscriptions.matching import OUTBOX
from fhir_server.subscriptions.model import PAYLOAD_CONTENT_URL
from tests.subscriptions.conftest import Server, vital
from tests.subscriptions.receiver import Receiver

VITALS = "Observation?category=vital-signs&patient=Patient/1"


async def test_requested_becomes_active_after_a_handshake(
    server: Server, receiver: Receiver
) -> None:
    sid = await server.subscribe(receiver.url, VITALS, header=["Authorization: Bearer abc"])
    sub = await server.wait_status(sid, "active")
    assert sub["meta"]["versionId"] == "2"  # the server's change is a new version
    [handshake] = receiver.requests
    assert (handshake.method, handshake.path, handshake.body) == ("POST", "/hook", b"")
    assert handshake.headers["authorization"] == "Bearer abc"


async def test_empty_payload_is_a_bare_post_for_matching_writes_only(
    server: Server, receiver: Receiver
) -> None:
    sid = await server.subscribe(receiver.url, VITALS, header=["X-Ehr-Key: k1"])
    await server.wait_status(sid, "active")
    await server.create(vital("Patient/2"))  # other patient: no notification
    obs = {**vital(), "category": [{"text": "not vital"}]}
    await server.create(obs)  # not vital-signs: no notification
    await server.create(vital("Patient/1"))
    requests = await receiver.wait_for(2)
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 2
    note = requests[1]
    assert (note.method, note.path, note.body) == ("POST", "/hook", b"")
    assert note.headers["x-ehr-key"] == "k1"


async def test_full_resource_is_a_put_to_endpoint_type_id(
    server: Server, receiver: Receiver
) -> None:
    sid = await server.subscribe(
        receiver.url,
        "Encounter?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|VR&status=finished",
        payload="application/fhir+json",
        header=["Authorization: Bearer secret"],
    )
    await server.wait_status(sid, "active")
    encounter = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
        "subject": {"reference": "Patient/1"},
    }
    created = await server.create(encounter)
    finished = {**created, "status": "finished"}
    r = await server.client.put(f"/Encounter/{created['id']}", json=finished)
    assert r.status_code == 200
    requests = await receiver.wait_for(2)
    note = requests[1]
    assert note.method == "PUT"
    assert note.path == f"/hook/Encounter/{created['id']}"
    assert note.headers["content-type"] == "application/fhir+json"
    assert note.headers["authorization"] == "Bearer secret"
    body = json.loads(note.body)
    assert body["status"] == "finished" and body["meta"]["versionId"] == "2"
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 2  # the in-progress version did not match


async def test_id_only_sends_a_history_bundle_without_the_resource(
    server: Server, receiver: Receiver
) -> None:
    ext = {"extension": [{"url": PAYLOAD_CONTENT_URL, "valueCode": "id-only"}]}
    sid = await server.subscribe(
        receiver.url, VITALS, payload="application/fhir+json", _payload=ext
    )
    await server.wait_status(sid, "active")
    obs = await server.create(vital())
    note = (await receiver.wait_for(2))[1]
    assert (note.method, note.path) == ("POST", "/hook")
    bundle = json.loads(note.body)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    status, focus = bundle["entry"]
    assert status["resource"]["resourceType"] == "Parameters"
    assert focus["fullUrl"].endswith(f"/Observation/{obs['id']}/_history/1")
    assert "resource" not in focus


async def test_delivered_notifications_leave_the_outbox(server: Server, receiver: Receiver) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "active")
    for _ in range(3):
        await server.create(vital())
    await receiver.wait_for(4)
    for _ in range(50):
        if not await server.services.storage.list_records(OUTBOX):
            break
        await asyncio.sleep(0.02)
    assert await server.services.storage.list_records(OUTBOX) == []


async def test_transaction_and_patch_writes_notify(server: Server, receiver: Receiver) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "active")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "POST", "url": "Observation"}, "resource": vital()}],
    }
    r = await server.client.post("", json=bundle)
    assert r.status_code == 200, r.text
    await receiver.wait_for(2)
    other = await server.create(vital("Patient/9"))
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/1"}]
    r = await server.client.patch(
        f"/Observation/{other['id']}",
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    await receiver.wait_for(3)


async def test_deletes_do_not_notify(server: Server, receiver: Receiver) -> None:
    sid = await server.subscribe(receiver.url, VITALS)
    await server.wait_status(sid, "active")
    obs = await server.create(vital())
    await receiver.wait_for(2)
    assert (await server.client.delete(f"/Observation/{obs['id']}")).status_code == 204
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 2
