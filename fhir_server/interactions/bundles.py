"""Assembling response Bundles from stored bytes (embedded with orjson.Fragment, never re-parsed)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.fhir.dates import to_instant_text
from fhir_server.storage.base import StoredResource


def full_url(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.id}"


def resource_fragment(stored: StoredResource) -> orjson.Fragment:
    return orjson.Fragment(stored.body)


def bundle(
    bundle_type: str,
    now_us: int,
    entries: list[dict[str, Any]],
    links: list[tuple[str, str]] | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": to_instant_text(now_us)},
        "type": bundle_type,
    }
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = [{"relation": rel, "url": url} for rel, url in links]
    out["entry"] = entries
    if not entries:
        del out["entry"]
    return out


def page_url(base_url: str, path: str, params: list[tuple[str, str]]) -> str:
    url = f"{base_url}/{path}" if path else base_url
    return f"{url}?{urlencode(params)}" if params else url
