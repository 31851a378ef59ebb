"""Concurrent writers: parallel updates never lose a write, with or without If-Match."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from fhir_server.app import build_services
from fhir_server.errors import FhirError
from fhir_server.interactions.common import deletion
from fhir_server.interactions.conditional import RecordedSearches
from fhir_server.interactions.context import FhirRequest, Services
from fhir_server.interactions.router import dispatch
from fhir_server.search.query import SearchQuery
from fhir_server.storage.base import SearchPage
from tests.api.conftest import make_settings

# Run on every storage engine (tests/storage/engines.py).
pytestmark = pytest.mark.all_engines


async def test_parallel_updates_without_if_match_keep_every_version(
    client: httpx.AsyncClient,
) -> None:
    await client.put("Patient/c1", json={"resourceType": "Patient", "id": "c1"})
    results = await asyncio.gather(
        *[
            client.put(
                "Patient/c1",
                json={"resourceType": "Patient", "id": "c1", "name": [{"family": f"N{i}"}]},
            )
            for i in range(20)
        ]
    )
    assert all(r.status_code == 200 for r in results)
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in results)
    assert versions == list(range(2, 22))
    hist = (await client.get("Patient/c1/_history", params={"_count": "100"})).json()
    assert hist["total"] == 21
    families = {e["resource"].get("name", [{}])[0].get("family") for e in hist["entry"]}
    assert {f"N{i}" for i in range(20)} <= families


async def test_parallel_updates_with_same_if_match_one_wins(client: httpx.AsyncClient) -> None:
    await client.put("Patient/c2", json={"resourceType": "Patient", "id": "c2"})
    results = await asyncio.gather(
        *[
            client.put(
                "Patient/c2",
                json={"resourceType": "Patient", "id": "c2", "gender": "male"},
                headers={"If-Match": 'W/"1"'},
            )
            for _ in range(10)
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [412] * 9
    assert (await client.get("Patient/c2")).json()["meta"]["versionId"] == "2"


async def test_two_stores_on_one_file_serialise_writes(tmp_path: Path) -> None:
    """Two engines on one database file stand in for two server processes."""
    settings = make_settings(tmp_path)
    a, b = build_services(settings), build_services(settings)
    await a.storage.open()
    await b.storage.open()
    try:
        body = {"resourceType": "Patient", "id": "shared"}
        req = FhirRequest("PUT", "Patient/shared", body=body)
        await dispatch(a, req)

        async def update(services: Services, n: int) -> None:
            for _ in range(n):
                await dispatch(
                    services, FhirRequest("PUT", "Patient/shared", body={**body, "gender": "other"})
                )

        await asyncio.gather(update(a, 15), update(b, 15))
        current = await a.storage.read("Patient", "shared")
        assert current is not None and current.version == 31
    finally:
        await a.storage.close()
        await b.storage.close()


async def test_transaction_refused_when_its_conditional_reference_changes_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction resolves conditional references on committed data before it takes the
    storage lock, and repeats the searches under it: a write in between makes it a 409 that
    stores nothing, not a reference to a resource that no longer matches."""
    services = build_services(make_settings(tmp_path))
    await services.storage.open()
    try:
        patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"value": "mrn-1"}]}
        await dispatch(services, FhirRequest("PUT", "Patient/p1", body=patient))
        resolved = asyncio.Event()
        search = RecordedSearches.search

        async def search_then_signal(self: RecordedSearches, query: SearchQuery) -> SearchPage:
            page = await search(self, query)
            resolved.set()
            return page

        monkeypatch.setattr(RecordedSearches, "search", search_then_signal)
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient?identifier=mrn-1"},
        }
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}],
        }
        async with services.storage.transaction() as tx:  # holds the lock the Bundle waits for
            task = asyncio.create_task(dispatch(services, FhirRequest("POST", "", body=bundle)))
            await resolved.wait()
            current = await tx.read("Patient", "p1")
            assert current is not None
            await tx.write(deletion(services, current))
        with pytest.raises(FhirError) as refused:
            await task
        assert refused.value.status == 409
        assert "concurrent write" in refused.value.issues[0].diagnostics
        assert (await services.storage.count("Observation")) == 0
    finally:
        await services.storage.close()
