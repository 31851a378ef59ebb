"""`_since`/`_until` and transactionTime under concurrent writes: an export, then an export
`_since` the first one's transactionTime, together give exactly the final state."""

from __future__ import annotations

import asyncio
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx

from fhir_server.fhir.dates import parse_fhir_datetime_range
from tests.export.conftest import (
    ASYNC,
    export_all,
    export_settings,
    patient,
    post_batch,
    running,
)


def _us(text: str) -> int:
    return parse_fhir_datetime_range(text, UTC)[0]


async def _writer(client: httpx.AsyncClient, stop: asyncio.Event) -> int:
    n = 0
    while not stop.is_set():
        n += 1
        # a new patient, and an update of an existing one
        await post_batch(client, [patient(f"new{n}"), {**patient(f"p{n % 40}"), "gender": "other"}])
    return n


async def _final_versions(client: httpx.AsyncClient) -> dict[str, str]:
    out: dict[str, str] = {}
    url: str | None = "Patient?_count=500"
    while url:
        bundle = (await client.get(url)).json()
        out.update(
            {
                e["resource"]["id"]: e["resource"]["meta"]["versionId"]
                for e in bundle.get("entry", [])
            }
        )
        url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
    return out


async def test_incremental_exports_miss_nothing_under_concurrent_writes(tmp_path: Path) -> None:
    settings = export_settings(tmp_path, export_page_size=5, export_settle_seconds=0.05)
    async with running(settings) as (_, client):
        await post_batch(client, [patient(f"p{i}") for i in range(40)])
        stop = asyncio.Event()
        writer = asyncio.create_task(_writer(client, stop))
        await asyncio.sleep(0.05)
        first, data1 = await export_all(client, "$export", params={"_type": "Patient"})
        await asyncio.sleep(0.05)
        stop.set()
        writes = await writer
        assert writes > 1
        t1 = first["transactionTime"]
        _, data2 = await export_all(client, "$export", params={"_type": "Patient", "_since": t1})
        final = await _final_versions(client)

        merged: dict[str, Any] = {r["id"]: r for r in data1["Patient"]}
        merged.update({r["id"]: r for r in data2.get("Patient", [])})
        assert {k: v["meta"]["versionId"] for k, v in merged.items()} == final
        # The second export holds only changes after t1.
        assert all(_us(r["meta"]["lastUpdated"]) > _us(t1) for r in data2.get("Patient", []))
        # Resources created after the first export's snapshot are not in it.
        assert len(data1["Patient"]) < len(final)


async def test_since_and_until_bound_last_updated(tmp_path: Path) -> None:
    async with running(export_settings(tmp_path)) as (_, client):
        await post_batch(client, [patient("old")])
        await asyncio.sleep(0.01)
        r = await client.get("Patient/old")
        cut = r.json()["meta"]["lastUpdated"]
        await asyncio.sleep(0.01)
        await post_batch(client, [patient("new")])
        _, data = await export_all(client, params={"_type": "Patient", "_since": cut})
        assert [p["id"] for p in data["Patient"]] == ["new"]
        _, data = await export_all(client, params={"_type": "Patient", "_until": cut})
        assert data == {}  # "old" changed at the cut, not before it
        r = await client.get("$export", params={"_since": "2024-13-01"}, headers=ASYNC)
        assert r.status_code == 400
