"""A Subscription resource as the server uses it: checked once, no I/O.

What R4 (4.0.1) fixes and what this server adds:

- `criteria` is a search without the base (`Observation?category=vital-signs`); its parameters
  are checked against the search parameter registry where a `SearchContext` is at hand
  (`matching.py`).
- Only `channel.type = rest-hook` is supported; `endpoint` must be an absolute http(s) URL.
- `channel.payload` is a mime type: absent means "no payload" (a bare POST), present means the
  resource itself is sent. Only `application/fhir+json` (or `application/json`) is produced.
- R4 has no "id-only" content; the R4 Subscriptions Backport IG expresses it with the extension
  `backport-payload-content` (empty | id-only | full-resource) on `channel.payload` (JSON:
  `channel._payload.extension`). The server honours that extension, so a subscription can ask for
  empty, id-only or full-resource notifications.
- `channel.header` strings are `Name: value` HTTP headers sent with every notification.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from fhir_server.errors import Unprocessable
from fhir_server.fhir.dates import parse_fhir_datetime_range

PAYLOAD_CONTENT_URL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)
PayloadContent = Literal["empty", "id-only", "full-resource"]
JSON_MIME_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
# Headers the HTTP client sets itself or that would change the request's framing or target.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type", "upgrade"}
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    id: str
    version: int
    status: str  # requested | active | error | off
    criteria: str
    criteria_type: str
    criteria_params: tuple[tuple[str, str], ...]
    endpoint: str
    content: PayloadContent
    mime_type: str | None  # channel.payload: what the resource is sent as
    headers: tuple[tuple[str, str], ...]
    end_us: int | None  # Subscription.end: when the server turns it off


def _bad(text: str, path: str) -> Unprocessable:
    return Unprocessable(text, expression=[f"Subscription.{path}"])


def split_criteria(criteria: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`Type?a=1&b=2` -> ("Type", (("a", "1"), ("b", "2"))). The type is not checked here."""
    rtype, _, query = criteria.strip().partition("?")
    if not re.fullmatch(r"[A-Z][A-Za-z]+", rtype):
        raise _bad(
            f"Subscription.criteria '{criteria}' must start with a resource type "
            "(for example 'Observation?code=...')",
            "criteria",
        )
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _bad(f"Malformed Subscription.criteria '{criteria}'", "criteria") from None
    return rtype, tuple(params)


def check_endpoint_url(endpoint: str) -> str:
    """The endpoint's host name or address (IPv6 without brackets); http(s) URLs only."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise _bad(f"Malformed channel.endpoint '{endpoint}'", "channel.endpoint") from None
    if parts.scheme not in ("http", "https"):
        raise _bad(
            f"A rest-hook channel.endpoint must be an http or https URL, not '{endpoint}'",
            "channel.endpoint",
        )
    if not host:
        raise _bad(f"channel.endpoint '{endpoint}' has no host", "channel.endpoint")
    if parts.username is not None or parts.password is not None:
        raise _bad(
            "channel.endpoint must not carry credentials; use channel.header", "channel.endpoint"
        )
    return host


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _HEADER_NAME.match(name):
        raise _bad(f"channel.header '{text}' is not an HTTP header 'Name: value'", "channel.header")
    if "\r" in value or "\n" in value or "\0" in value:
        raise _bad("channel.header values must not contain line breaks", "channel.header")
    if name.lower() in _RESERVED_HEADERS:
        raise _bad(f"channel.header must not set '{name}'", "channel.header")
    return name, value


def _payload_content(channel: dict[str, Any]) -> PayloadContent:
    payload = channel.get("payload")
    ext = channel.get("_payload")
    declared: str | None = None
    if isinstance(ext, dict):
        for e in ext.get("extension") or []:
            if isinstance(e, dict) and e.get("url") == PAYLOAD_CONTENT_URL:
                declared = e.get("valueCode")
    if payload is not None and (
        not isinstance(payload, str) or payload.split(";")[0].strip() not in JSON_MIME_TYPES
    ):
        raise _bad(
            f"channel.payload '{payload}' is not supported; use application/fhir+json",
            "channel.payload",
        )
    if declared is None:
        return "full-resource" if payload is not None else "empty"
    if declared not in ("empty", "id-only", "full-resource"):
        raise _bad(
            f"backport-payload-content '{declared}' must be empty, id-only or full-resource",
            "channel.payload",
        )
    if declared == "full-resource" and payload is None:
        raise _bad("A full-resource payload needs channel.payload (a mime type)", "channel.payload")
    return declared  # type: ignore[return-value]


def parse_subscription(doc: dict[str, Any]) -> SubscriptionSpec:
    """Check the parts of a Subscription this server acts on; 422 naming the element if wrong."""
    channel = doc.get("channel")
    if not isinstance(channel, dict):
        raise _bad("Subscription.channel is required", "channel")
    ctype = channel.get("type")
    if ctype != "rest-hook":
        raise Unprocessable(
            f"Subscription channel type '{ctype}' is not supported; this server supports rest-hook",
            code="not-supported",
            expression=["Subscription.channel.type"],
        )
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise _bad("A rest-hook subscription needs channel.endpoint", "channel.endpoint")
    check_endpoint_url(endpoint)
    criteria = doc.get("criteria")
    if not isinstance(criteria, str) or not criteria.strip():
        raise _bad("Subscription.criteria is required", "criteria")
    rtype, params = split_criteria(criteria)
    raw_headers = channel.get("header") or []
    if isinstance(raw_headers, str):  # tolerate the STU3 single-string form
        raw_headers = [raw_headers]
    headers = tuple(parse_header(h) for h in raw_headers if isinstance(h, str))
    end_us: int | None = None
    end = doc.get("end")
    if isinstance(end, str):
        try:
            end_us = parse_fhir_datetime_range(end, UTC)[0]
        except ValueError:
            raise _bad(f"Subscription.end '{end}' is not an instant", "end") from None
    meta = doc.get("meta") or {}
    return SubscriptionSpec(
        id=str(doc.get("id", "")),
        version=int(meta.get("versionId", "0") or 0),
        status=str(doc.get("status", "")),
        criteria=criteria,
        criteria_type=rtype,
        criteria_params=params,
        endpoint=endpoint,
        content=_payload_content(channel),
        mime_type=channel.get("payload"),
        headers=headers,
        end_us=end_us,
    )
