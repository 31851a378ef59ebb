"""The pure parts: reading a Subscription, building the request, judging addresses."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from fhir_server.errors import Unprocessable
from fhir_server.subscriptions.matching import outbox_key, outbox_prefix
from fhir_server.subscriptions.model import PAYLOAD_CONTENT_URL, parse_subscription
from fhir_server.subscriptions.notify import Event, notification, ping
from fhir_server.subscriptions.ssrf import AllowList, EndpointRefused, check_addresses, refusal


def sub(**channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "id": "s1",
        "meta": {"versionId": "3"},
        "status": "active",
        "criteria": "Observation?code=http://loinc.org|8867-4&patient=Patient/1",
        "channel": {"type": "rest-hook", "endpoint": "https://ehr.example.com/fhir/", **channel},
    }


def content(payload: str | None, declared: str | None) -> str:
    channel: dict[str, Any] = {}
    if payload is not None:
        channel["payload"] = payload
    if declared is not None:
        channel["_payload"] = {"extension": [{"url": PAYLOAD_CONTENT_URL, "valueCode": declared}]}
    return parse_subscription(sub(**channel)).content


def test_payload_content_follows_r4_and_the_backport_extension() -> None:
    assert content(None, None) == "empty"
    assert content("application/fhir+json", None) == "full-resource"
    assert content("application/fhir+json", "id-only") == "id-only"
    assert content(None, "id-only") == "id-only"
    assert content("application/fhir+json", "empty") == "empty"
    with pytest.raises(Unprocessable):
        content(None, "full-resource")  # R4 needs a mime type to send the resource in
    with pytest.raises(Unprocessable):
        content("application/json", "everything")


def test_spec_fields() -> None:
    spec = parse_subscription(
        {**sub(header=["Authorization: Bearer x", "X-A:  b "]), "end": "2030-01-01T00:00:00Z"}
    )
    assert spec.criteria_type == "Observation"
    assert spec.criteria_params == (("code", "http://loinc.org|8867-4"), ("patient", "Patient/1"))
    assert spec.headers == (("Authorization", "Bearer x"), ("X-A", "b"))
    assert spec.version == 3 and spec.end_us is not None


def test_requests_per_payload_content() -> None:
    event = Event("s1/0001-ab", "Observation", "o1", 2, "PUT", 1_700_000_000_000_000)
    empty = parse_subscription(sub(header=["X-K: v"]))
    req = notification(empty, event, b"{}", "https://fhir.example.org/fhir")
    assert (req.method, req.url, req.body) == ("POST", "https://ehr.example.com/fhir/", None)
    assert req.headers == (("X-K", "v"),)
    assert ping(empty) == req

    full = parse_subscription(sub(payload="application/fhir+json", header=["X-K: v"]))
    req = notification(full, event, b'{"resourceType":"Observation"}', "https://x/fhir")
    assert (req.method, req.url) == ("PUT", "https://ehr.example.com/fhir/Observation/o1")
    assert ("X-K", "v") in req.headers and ("Content-Type", "application/fhir+json") in req.headers

    ext = {"extension": [{"url": PAYLOAD_CONTENT_URL, "valueCode": "id-only"}]}
    ids = parse_subscription(sub(_payload=ext))
    req = notification(ids, event, None, "https://fhir.example.org/fhir")
    assert req.method == "POST" and req.body is not None
    bundle = json.loads(req.body)
    focus = bundle["entry"][1]
    assert focus["fullUrl"] == "https://fhir.example.org/fhir/Observation/o1/_history/2"
    assert focus["request"] == {"method": "PUT", "url": "Observation/o1"}


def test_outbox_keys_sort_by_enqueue_time_within_a_subscription() -> None:
    keys = [outbox_key("s1", t) for t in (5, 40, 300, 1_700_000_000_000_000)]
    assert sorted(keys) == keys and all(k.startswith(outbox_prefix("s1")) for k in keys)
    assert len(set(outbox_key("s1", 5) for _ in range(20))) == 20


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "non-global"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_refusal(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


def test_allow_list() -> None:
    allowed = AllowList.parse(" EHR.internal , 10.0.0.5,[fd00::1], 192.168.0.0/24,")
    loopback = [ipaddress.ip_address("127.0.0.1")]
    check_addresses("ehr.internal", loopback, allowed)  # a listed name: any address
    check_addresses("x", [ipaddress.ip_address("10.0.0.5")], allowed)
    check_addresses("x", [ipaddress.ip_address("fd00::1")], allowed)
    check_addresses("x", [ipaddress.ip_address("192.168.0.77")], allowed)
    check_addresses("x", [ipaddress.ip_address("8.8.8.8")], allowed)
    with pytest.raises(EndpointRefused):  # every address must pass
        check_addresses("x", [ipaddress.ip_address("8.8.8.8"), *loopback], allowed)
