"""Kick-off, status, manifest, download, cancellation and the concurrency limit over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from fhir_server.settings import Settings
from tests.export.conftest import (
    ASYNC,
    download,
    export_all,
    export_settings,
    ids,
    kickoff,
    observation,
    patient,
    post_batch,
    running,
    wait_done,
)


async def test_kickoff_requires_respond_async(client: httpx.AsyncClient) -> None:
    r = await client.get("$export")
    assert r.status_code == 400
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "respond-async" in body["issue"][0]["diagnostics"]


async def test_system_export_manifest_and_files(client: httpx.AsyncClient) -> None:
    await post_batch(client, [patient("p1"), patient("p2"), observation("o1", "p1")])
    manifest, data = await export_all(client, "$export")
    assert manifest["requiresAccessToken"] is False  # authorization is off in these tests
    assert manifest["request"].endswith("/fhir/$export")
    assert manifest["transactionTime"].endswith("Z")
    assert manifest["error"] == []
    # The store also holds the server's conformance resources: a system export has them too.
    assert {"Patient", "Observation"} <= {o["type"] for o in manifest["output"]}
    assert ids(data["Patient"]) == {"p1", "p2"}
    assert ids(data["Observation"]) == {"o1"}


async def test_post_kickoff_with_parameters(client: httpx.AsyncClient) -> None:
    await post_batch(client, [patient("p1"), observation("o1", "p1")])
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Observation"},
            {"name": "_outputFormat", "valueString": "application/ndjson"},
        ],
    }
    url = await kickoff(
        client,
        "$export",
        method="POST",
        json=body,
        headers={"Content-Type": "application/fhir+json"},
    )
    r = await wait_done(client, url)
    assert r.status_code == 200
    assert [o["type"] for o in r.json()["output"]] == ["Observation"]


async def test_unsupported_parameters_400_or_lenient_warning(client: httpx.AsyncClient) -> None:
    r = await client.get("$export", params={"_outputFormat": "text/csv"}, headers=ASYNC)
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "not-supported"
    r = await client.get(
        "$export", params={"includeAssociatedData": "LatestProvenanceResources"}, headers=ASYNC
    )
    assert r.status_code == 400
    r = await client.get("$export", params={"_foo": "1"}, headers=ASYNC)
    assert r.status_code == 400 and "_foo" in r.text
    r = await client.get("$export", params={"_since": "yesterday"}, headers=ASYNC)
    assert r.status_code == 400 and "_since" in r.text

    await post_batch(client, [patient("p1")])
    lenient = {"Prefer": "respond-async, handling=lenient"}
    url = await kickoff(
        client, "$export", params={"_foo": "1", "_type": "Patient"}, headers=lenient
    )
    r = await wait_done(client, url)
    manifest = r.json()
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    errors = await download(client, manifest, "error")
    [outcome] = errors["OperationOutcome"]
    assert outcome["issue"][0]["severity"] == "warning"
    assert "_foo" in outcome["issue"][0]["diagnostics"]


async def test_elements_subsets_and_tags(client: httpx.AsyncClient) -> None:
    await post_batch(client, [patient("p1"), observation("o1", "p1")])
    _, data = await export_all(
        client,
        "$export",
        params={"_type": "Observation,Patient", "_elements": "Observation.status"},
    )
    [obs] = data["Observation"]
    assert "valueQuantity" not in obs and obs["status"] == "final"
    assert obs["meta"]["tag"][-1]["code"] == "SUBSETTED"
    [pat] = data["Patient"]
    assert pat["name"] and "tag" not in pat["meta"]


async def test_type_filter_ors_queries_and_ands_with_type(client: httpx.AsyncClient) -> None:
    await post_batch(
        client,
        [
            patient("p1"),
            observation("hr", "p1", "8867-4"),
            observation("bw", "p1", "29463-7"),
            observation("bp", "p1", "85354-9"),
        ],
    )
    params = [
        ("_type", "Observation,Patient"),
        ("_typeFilter", "Observation?code=http://loinc.org|8867-4"),
        ("_typeFilter", "Observation?code=http://loinc.org|29463-7,http://loinc.org|8867-4"),
    ]
    _, data = await export_all(client, "$export", params=params)
    assert sorted(r["id"] for r in data["Observation"]) == ["bw", "hr"]  # once each
    assert ids(data["Patient"]) == {"p1"}
    r = await client.get("$export", params={"_typeFilter": "Observation?bogus=1"}, headers=ASYNC)
    assert r.status_code == 400 and "_typeFilter" in r.text
    r = await client.get("$export", params={"_typeFilter": "Observation?_sort=date"}, headers=ASYNC)
    assert r.status_code == 400


async def test_files_split_when_large(tmp_path: Path) -> None:
    settings = export_settings(tmp_path, export_lines_per_file=3, export_page_size=2)
    async with running(settings) as (_, client):
        await post_batch(client, [patient(f"p{i}") for i in range(7)])
        manifest, data = await export_all(client, "$export", params={"_type": "Patient"})
        assert [o["count"] for o in manifest["output"]] == [3, 3, 1]
        assert len({o["url"] for o in manifest["output"]}) == 3
        assert ids(data["Patient"]) == {f"p{i}" for i in range(7)}


async def test_cancel_removes_files_and_forgets_job(settings: Settings) -> None:
    async with running(settings) as (_, client):
        await post_batch(client, [patient("p1")])
        url = await kickoff(client)
        r = await wait_done(client, url)
        file_url = r.json()["output"][0]["url"]
        job_id = url.rsplit("/", 1)[-1]
        assert (settings.export_directory() / job_id).is_dir()
        r = await client.delete(url)
        assert r.status_code == 202
        assert (await client.get(url)).status_code == 404
        assert (await client.get(file_url)).status_code == 404
        assert not (settings.export_directory() / job_id).exists()
        assert (await client.delete(url)).status_code == 404


async def test_too_many_exports_429(tmp_path: Path) -> None:
    # A runner that never polls keeps the first job accepted.
    settings = export_settings(tmp_path, export_max_concurrent=1, export_poll_seconds=3600)
    async with running(settings) as (_, client):
        first = await kickoff(client)
        r = await client.get("$export", headers=ASYNC)
        assert r.status_code == 429
        assert r.json()["issue"][0]["code"] == "throttled"
        assert (await client.get(first)).status_code == 202
        assert (await client.delete(first)).status_code == 202
        await kickoff(client)  # a cancelled job no longer counts


async def test_expired_exports_answer_404(tmp_path: Path) -> None:
    settings = export_settings(tmp_path, export_expiry_seconds=0)
    async with running(settings) as (_, client):
        await post_batch(client, [patient("p1")])
        url = await kickoff(client)
        r = await wait_done(client, url)
        assert r.status_code == 404
        job_id = url.rsplit("/", 1)[-1]
        for _ in range(100):  # the runner's sweep removes the files
            if not (settings.export_directory() / job_id).exists():
                break
            import asyncio

            await asyncio.sleep(0.02)
        assert not (settings.export_directory() / job_id).exists()


async def test_unknown_job_and_file(client: httpx.AsyncClient) -> None:
    assert (await client.get("$export-status/nope")).status_code == 404
    assert (await client.get("$export-file/nope/Patient-1.ndjson")).status_code == 404
    assert (await client.get("Patient/1/$export", headers=ASYNC)).status_code == 404


async def test_capability_statement_lists_the_export_operations(client: httpx.AsyncClient) -> None:
    rest = (await client.get("metadata")).json()["rest"][0]
    ig = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
    assert {"name": "export", "definition": f"{ig}/export"} in rest["operation"]
    by_type = {r["type"]: r.get("operation", []) for r in rest["resource"]}
    assert {"name": "export", "definition": f"{ig}/patient-export"} in by_type["Patient"]
    assert {"name": "export", "definition": f"{ig}/group-export"} in by_type["Group"]
    assert not any(op["name"] == "export" for op in by_type["Observation"])


def _provenance(pid: str, target: str) -> dict[str, object]:
    return {
        "resourceType": "Provenance",
        "id": pid,
        "target": [{"reference": target}],
        "recorded": "2024-05-01T10:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/dr"}}],
    }


async def test_include_associated_relevant_provenance(client: httpx.AsyncClient) -> None:
    await post_batch(
        client,
        [
            patient("p1"),
            patient("p2"),
            observation("hr", "p1", "8867-4"),
            observation("bw", "p1", "29463-7"),
            observation("other", "p2", "8867-4"),
            _provenance("prov-hr", "Observation/hr"),
            _provenance("prov-bw", "Observation/bw"),
            _provenance("prov-other", "Observation/other"),
        ],
    )
    params = {
        "_type": "Observation",
        "_typeFilter": "Observation?code=http://loinc.org|8867-4",
        "patient": "Patient/p1",
        "includeAssociatedData": "RelevantProvenanceResources",
    }
    _, data = await export_all(client, "Patient/$export", params=params)
    assert ids(data["Observation"]) == {"hr"}
    assert ids(data["Provenance"]) == {"prov-hr"}
    # With every Provenance exported anyway, nothing is added twice.
    params = {
        "_type": "Observation,Provenance",
        "includeAssociatedData": "RelevantProvenanceResources",
    }
    _, data = await export_all(client, "$export", params=params)
    assert sorted(r["id"] for r in data["Provenance"]) == ["prov-bw", "prov-hr", "prov-other"]


async def test_type_filter_with_unsupported_parameter_strict_or_lenient(
    client: httpx.AsyncClient,
) -> None:
    """Strict: 400 not-supported. Lenient: that _typeFilter query is not applied (the IG: the
    server MAY ignore what it does not support) and a warning in the `error` file names it; the
    type's other queries still apply. A malformed query is a 400 either way."""
    await post_batch(
        client,
        [patient("p1"), patient("p2"), observation("hr", "p1", "8867-4"),
         observation("bw", "p1", "29463-7")],
    )  # fmt: skip
    r = await client.get("$export", params={"_typeFilter": "Patient?foo=bar"}, headers=ASYNC)
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "not-supported" and "foo" in r.text
    lenient = {"Prefer": "respond-async, handling=lenient"}
    params = [
        ("_type", "Patient,Observation"),
        ("_typeFilter", "Patient?foo=bar"),
        ("_typeFilter", "Observation?code=http://loinc.org|8867-4"),
        ("_typeFilter", "Observation?bogus:exact=1"),
    ]
    manifest, data = await export_all(client, "$export", params=params, headers=lenient)
    assert ids(data["Patient"]) == {"p1", "p2"}  # its only query was not applied
    assert ids(data["Observation"]) == {"hr"}  # the supported query still applies
    errors = await download(client, manifest, "error")
    texts = [i["diagnostics"] for o in errors["OperationOutcome"] for i in o["issue"]]
    assert any("Patient?foo=bar" in t for t in texts)
    assert any("Observation?bogus:exact=1" in t for t in texts)
    assert all(i["severity"] == "warning" for o in errors["OperationOutcome"] for i in o["issue"])
    for bad in ("Observation?date=notadate", "Observation?_sort=date", "nonsense"):
        r = await client.get("$export", params={"_typeFilter": bad}, headers=lenient)
        assert r.status_code == 400, bad


async def test_manifest_request_is_the_kickoff_url_as_sent(client: httpx.AsyncClient) -> None:
    """`request` keeps the query string exactly as received (no re-encoding of ',' or '|')."""
    await post_batch(client, [patient("p1")])
    query = "_type=Patient,Group&_typeFilter=Patient?_id=p1,p2"
    url = await kickoff(client, f"$export?{query}")
    r = await wait_done(client, url)
    assert r.status_code == 200, r.text
    assert r.json()["request"] == f"http://testserver/fhir/$export?{query}"
    encoded = "_type=Patient%2CGroup"
    r = await wait_done(client, await kickoff(client, f"$export?{encoded}"))
    assert r.json()["request"].endswith(f"/fhir/$export?{encoded}")


async def test_manifest_without_authorization_needs_no_token(client: httpx.AsyncClient) -> None:
    """With authorization off the files download without a token: requiresAccessToken false."""
    await post_batch(client, [patient("p1")])
    manifest, data = await export_all(client, "$export", params={"_type": "Patient"})
    assert manifest["requiresAccessToken"] is False
    assert ids(data["Patient"]) == {"p1"}
