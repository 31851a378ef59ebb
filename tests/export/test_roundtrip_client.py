"""A bulk client written as the IG describes it (kick-off, poll honouring Retry-After, download
each file streamed, then DELETE), and a round trip: what it downloads, loaded into an empty store,
gives back the same resources."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx

from fhir_server.fhir import jsonio
from fhir_server.loader import load
from fhir_server.seed import direct_sender
from tests.export.conftest import export_settings, running
from tests.export.test_group_patient import SEED_GROUP


async def bulk_export(client: httpx.AsyncClient, kickoff_url: str, out: Path) -> dict[str, Any]:
    """A Bulk Data client: returns the manifest after downloading every file into `out`."""
    r = await client.get(
        kickoff_url, headers={"Accept": "application/fhir+json", "Prefer": "respond-async"}
    )
    assert r.status_code == 202, r.text
    status_url = r.headers["Content-Location"]
    while True:
        r = await client.get(status_url, headers={"Accept": "application/json"})
        if r.status_code != 202:
            break
        assert r.headers["X-Progress"]
        await asyncio.sleep(min(float(r.headers["Retry-After"]), 0.05))  # a test need not wait 1 s
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    manifest: dict[str, Any] = r.json()
    assert manifest["requiresAccessToken"] is False  # authorization off: no token needed
    out.mkdir(parents=True, exist_ok=True)
    for item in manifest["output"] + manifest["error"]:
        name = item["url"].rsplit("/", 1)[-1]
        headers = {"Accept": "application/fhir+ndjson"}  # + the same bearer token when auth is on
        async with client.stream("GET", item["url"], headers=headers) as resp:
            assert resp.status_code == 200
            with (out / name).open("wb") as f:
                async for chunk in resp.aiter_bytes():
                    f.write(chunk)
    assert (await client.delete(status_url)).status_code == 202
    assert (await client.get(status_url)).status_code == 404
    return manifest


def _without_meta_times(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")
    }
    return {**resource, "meta": meta}


async def test_round_trip_into_an_empty_store(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    for name in ("00-practice.json", "10-patient-01.json", SEED_GROUP.name):
        shutil.copy(SEED_GROUP.parent / name, seed / name)
    out = tmp_path / "download"
    settings = export_settings(
        tmp_path / "a", seed=True, seed_dir=seed, export_page_size=100, export_lines_per_file=250
    )
    async with running(settings) as (_, client):
        manifest = await bulk_export(client, "$export", out)
        exported: dict[str, dict[str, Any]] = {}
        for f in sorted(out.glob("*.ndjson")):
            if f.name.startswith("OperationOutcome"):
                continue
            for line in f.read_bytes().splitlines():
                r = jsonio.loads(line)
                key = f"{r['resourceType']}/{r['id']}"
                assert key not in exported, f"{key} exported twice"
                exported[key] = r
        counts = {o["type"] for o in manifest["output"]}
        for rtype in counts:
            r = await client.get(rtype, params={"_summary": "count"})
            assert r.json()["total"] == sum(1 for k in exported if k.startswith(f"{rtype}/"))
        assert {"Patient", "Observation", "Group", "Organization"} <= counts

    async with running(export_settings(tmp_path / "b")) as (app, client):
        summary = await load(sorted(out.glob("*.ndjson")), direct_sender(app.state.services))
        # The server's own conformance resources (profiles/) are already there, read-only.
        assert all("read-only" in why for _, why in summary.refused), summary.refused
        for key, resource in exported.items():
            r = await client.get(key)
            assert r.status_code == 200, key
            assert _without_meta_times(r.json()) == _without_meta_times(resource), key
        for rtype in counts:
            r = await client.get(rtype, params={"_summary": "count"})
            assert r.json()["total"] == sum(1 for k in exported if k.startswith(f"{rtype}/"))
