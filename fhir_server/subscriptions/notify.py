"""The HTTP request a rest-hook notification is. Pure: no I/O.

R4 (subscription.html, "REST Hook"): when the subscription has no payload, the server "just makes
a POST to the nominated URL with no body"; when it has a payload (a mime type), the endpoint is
treated as a FHIR base and the resource is sent as an update, `PUT [endpoint]/[type]/[id]`, in
that mime type. Either way every `channel.header` is sent as an HTTP header.

So, by payload content (see `model.py` for how it is declared):

- empty: `POST [endpoint]`, no body.
- full-resource: `PUT [endpoint]/[type]/[id]` with the version that matched, with
  `Content-Type` set to `channel.payload` (`application/fhir+json`).
- id-only (not in R4; the Subscriptions Backport IG's name for it): `POST [endpoint]` with a
  `Bundle` of type `history` carrying no resource bodies: first a `Parameters` entry shaped like
  the Backport IG's R4 SubscriptionStatus (subscription, status, type `event-notification`,
  one `notification-event` whose `focus` is the resource's versioned URL), then one entry with
  the resource's `fullUrl` and `request`/`response` but no `resource`. The receiver reads the
  resource from this server when it wants it.

R4 defines no activation handshake. When a `requested` subscription is activated (and when an
`error` subscription with nothing queued is probed), the server sends the R4 no-payload
notification, `POST [endpoint]` with no body and the channel headers, which every R4 rest-hook
receiver already accepts; a 2xx answer activates the subscription.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import to_instant_text
from fhir_server.subscriptions.model import SubscriptionSpec

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True, slots=True)
class Event:
    """One queued notification: which version of which resource matched, and when."""

    key: str  # the outbox record key
    resource_type: str
    id: str
    version: int
    method: str  # POST | PUT | PATCH: how the version was written
    at_us: int


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


def ping(spec: SubscriptionSpec) -> HttpRequest:
    """The handshake/probe: R4's no-payload notification."""
    return HttpRequest("POST", spec.endpoint, spec.headers, None)


def notification(
    spec: SubscriptionSpec, event: Event, resource_body: bytes | None, base_url: str
) -> HttpRequest:
    """The request for `event`; `resource_body` is the matched version (full-resource only)."""
    if spec.content == "full-resource" and resource_body is not None:
        url = f"{spec.endpoint.rstrip('/')}/{event.resource_type}/{event.id}"
        headers = (*spec.headers, ("Content-Type", spec.mime_type or FHIR_JSON))
        return HttpRequest("PUT", url, headers, resource_body)
    if spec.content == "id-only":
        body = jsonio.dumps(id_only_bundle(spec, event, base_url))
        return HttpRequest(
            "POST", spec.endpoint, (*spec.headers, ("Content-Type", FHIR_JSON)), body
        )
    return HttpRequest("POST", spec.endpoint, spec.headers, None)


def id_only_bundle(spec: SubscriptionSpec, event: Event, base_url: str) -> dict[str, Any]:
    sub_url = f"{base_url}/Subscription/{spec.id}"
    focus = f"{base_url}/{event.resource_type}/{event.id}/_history/{event.version}"
    status = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": sub_url}},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {
                "name": "notification-event",
                "part": [
                    {"name": "event-number", "valueString": event.key},
                    {"name": "timestamp", "valueInstant": to_instant_text(event.at_us)},
                    {"name": "focus", "valueReference": {"reference": focus}},
                ],
            },
        ],
    }
    created = event.version == 1 and event.method == "POST"
    return {
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": to_instant_text(event.at_us),
        "entry": [
            {
                "fullUrl": f"{sub_url}/$status",
                "resource": status,
                "request": {"method": "GET", "url": f"Subscription/{spec.id}/$status"},
                "response": {"status": "200"},
            },
            {
                "fullUrl": focus,
                "request": {
                    "method": "POST" if created else "PUT",
                    "url": event.resource_type if created else f"{event.resource_type}/{event.id}",
                },
                "response": {"status": "201" if created else "200"},
            },
        ],
    }
