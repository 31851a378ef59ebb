"""A Subscription is checked when written: criteria, channel, endpoint (SSRF guard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.subscriptions.conftest import Server, running, sub_settings, subscription

VITALS = "Observation?category=vital-signs"


async def _post(server: Server, body: dict[str, Any]) -> tuple[int, str]:
    r = await server.client.post("/Subscription", json=body)
    text = ""
    if r.status_code >= 400:
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        text = outcome["issue"][0]["diagnostics"]
    return r.status_code, text


BAD_CRITERIA = [
    ("Observation?nonsense=1", "Unknown search parameter 'nonsense'"),
    ("Observation?date=notadate", "date"),
    ("NoSuchType?x=1", "unknown resource type"),
    ("?code=1", "must start with a resource type"),
]


async def test_bad_criteria_are_refused(server: Server) -> None:
    for criteria, expected in BAD_CRITERIA:
        status, text = await _post(server, subscription("http://127.0.0.1:9/hook", criteria))
        assert status == 422 and expected in text, (criteria, text)


BAD_CHANNELS: list[tuple[dict[str, Any], str]] = [
    ({"type": "websocket"}, "supports rest-hook"),
    ({"type": "email", "endpoint": "mailto:a@b.c"}, "supports rest-hook"),
    ({"endpoint": "ftp://127.0.0.1/x"}, "http or https"),
    ({"endpoint": "http://u:p@127.0.0.1/x"}, "credentials"),
    ({"payload": "application/fhir+xml"}, "application/fhir+json"),
    ({"header": ["no colon here"]}, "Name: value"),
    ({"header": ["Host: evil.example"]}, "must not set 'Host'"),
]


async def test_bad_channels_are_refused(server: Server) -> None:
    for channel, expected in BAD_CHANNELS:
        body = subscription("http://127.0.0.1:9/hook", VITALS)
        body["channel"] = {**body["channel"], **channel}
        status, text = await _post(server, body)
        assert status == 422 and expected in text, (channel, text)


INTERNAL = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "https://100.64.0.1/hook",
]


async def test_internal_endpoints_are_refused_unless_allowed(tmp_path: Path) -> None:
    async with running(sub_settings(tmp_path, subscription_allowed_hosts="")) as server:
        for endpoint in INTERNAL:
            status, text = await _post(server, subscription(endpoint, VITALS))
            assert status == 422, endpoint
            assert "FHIR_SERVER_SUBSCRIPTION_ALLOWED_HOSTS" in text, text


async def test_allowed_hosts_accept_names_addresses_and_networks(tmp_path: Path) -> None:
    allowed = "localhost, 10.1.2.3, 192.168.0.0/16"
    async with running(sub_settings(tmp_path, subscription_allowed_hosts=allowed)) as server:
        for endpoint in ("http://localhost/a", "http://10.1.2.3/a", "http://192.168.7.7/a"):
            status, text = await _post(server, subscription(endpoint, VITALS))
            assert status == 201, text
        status, _ = await _post(server, subscription("http://10.1.2.4/a", VITALS))
        assert status == 422


async def test_an_update_is_checked_too(server: Server) -> None:
    r = await server.client.post("/Subscription", json=subscription("http://127.0.0.1/a", VITALS))
    sub = r.json()
    sub["criteria"] = "Observation?bogus=1"
    r = await server.client.put(f"/Subscription/{sub['id']}", json=sub)
    assert r.status_code == 422
    sub["criteria"] = VITALS
    sub["channel"]["endpoint"] = "http://10.0.0.1/a"
    r = await server.client.put(f"/Subscription/{sub['id']}", json=sub)
    assert r.status_code == 422


async def test_an_off_subscription_is_checked_when_turned_on(tmp_path: Path) -> None:
    async with running(sub_settings(tmp_path, subscription_allowed_hosts="")) as server:
        body = {**subscription("http://10.0.0.1/a", VITALS), "status": "off"}
        r = await server.client.post("/Subscription", json=body)
        assert r.status_code == 201, r.text
        r = await server.client.put(
            f"/Subscription/{r.json()['id']}", json={**r.json(), "status": "requested"}
        )
        assert r.status_code == 422
