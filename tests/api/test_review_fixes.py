"""Regressions from the black-box review of the REST core and search (one test per finding)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from fhir_server.api.catch_all import CatchAllMiddleware


def _patient(pid: str, gender: str, family: str = "Smith") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": gender,
        "name": [{"family": family}],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{family}</div>',
        },
    }


async def _put_all(client: httpx.AsyncClient, resources: list[dict[str, Any]]) -> None:
    for res in resources:
        r = await client.put(f"{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code in (200, 201), r.text


async def _count(client: httpx.AsyncClient, rtype: str, **params: str) -> int:
    r = await client.get(rtype, params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    total = r.json()["total"]
    assert isinstance(total, int)
    return total


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("DELETE", "_summary=count"),
        ("DELETE", "_count=1"),
        ("DELETE", "gender=female&_sort=-_lastUpdated"),
        ("PUT", "gender=female&_count=1"),
        ("PATCH", "gender=female&_summary=count"),
    ],
)
async def test_conditional_refuses_result_parameters(
    client: httpx.AsyncClient, method: str, query: str
) -> None:
    await _put_all(client, [_patient("a", "female"), _patient("b", "female")])
    body: Any = None
    headers: dict[str, str] = {}
    if method == "PUT":
        body = _patient("a", "male")
        del body["id"]
    elif method == "PATCH":
        body = [{"op": "replace", "path": "/gender", "value": "male"}]
        headers["Content-Type"] = "application/json-patch+json"
    r = await client.request(
        method,
        f"Patient?{query}",
        content=None if body is None else httpx.Request("POST", "/", json=body).content,
        headers={"Content-Type": "application/fhir+json", **headers},
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["resourceType"] == "OperationOutcome"
    assert await _count(client, "Patient", gender="female") == 2


async def test_if_none_exist_refuses_count_and_accepts_type_prefix(
    client: httpx.AsyncClient,
) -> None:
    await _put_all(client, [_patient("a", "female"), _patient("b", "female")])
    new = {"resourceType": "Patient", "gender": "female"}
    r = await client.post("Patient", json=new, headers={"If-None-Exist": "gender=female&_count=1"})
    assert r.status_code == 400, r.text
    r = await client.post("Patient", json=new, headers={"If-None-Exist": "Patient?_id=a"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "a"


async def test_transaction_conditional_reference_refuses_count(client: httpx.AsyncClient) -> None:
    await _put_all(client, [_patient("a", "female"), _patient("b", "female")])
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient?gender=female&_count=1"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    "params",
    [
        {"_text": "thompsonian", "_summary": "count"},
        {"_content": "columbus", "_total": "accurate", "_count": "1"},
    ],
)
async def test_text_only_search_can_be_counted(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    await _put_all(
        client,
        [
            _patient("a", "female", "Thompsonian"),
            _patient("b", "male", "Columbus"),
            _patient("c", "male", "Jones"),
        ],
    )
    r = await client.get("Patient", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1


async def test_unexpected_exception_is_a_500_outcome_not_raised() -> None:
    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    app = CatchAllMiddleware(boom)
    transport = httpx.ASGITransport(app=app)  # raises whatever escapes the app
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/x")
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"gender": "male"}'),
        ("application/fhir+json", b'{"resourceType": "Parameters", "parameter": []}'),
    ],
)
async def test_search_post_with_a_json_body_is_refused(
    client: httpx.AsyncClient, content_type: str, body: bytes
) -> None:
    await _put_all(client, [_patient("a", "female"), _patient("b", "male")])
    r = await client.post("Patient/_search", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 415, r.text
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await client.post("Patient/_search", content=b"gender=male", headers=form)
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["b"]


async def test_unencoded_plus_in_format(client: httpx.AsyncClient) -> None:
    r = await client.get("metadata?_format=application/fhir+json")  # `+` sent as is
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    r = await client.get(
        "$export?_outputFormat=application/fhir+ndjson", headers={"Prefer": "respond-async"}
    )
    assert r.status_code == 202, r.text


async def test_accept_of_another_fhir_version_is_406(client: httpx.AsyncClient) -> None:
    r = await client.get("metadata", headers={"Accept": "application/fhir+json; fhirVersion=5.0"})
    assert r.status_code == 406, r.text
    r = await client.get("metadata", headers={"Accept": "application/fhir+json; fhirVersion=4.0"})
    assert r.status_code == 200, r.text


def _links(body: dict[str, Any]) -> dict[str, str]:
    return {ln["relation"]: ln["url"] for ln in body.get("link", ())}


async def test_lenient_links_carry_only_applied_parameters(client: httpx.AsyncClient) -> None:
    await _put_all(client, [_patient(p, "female") for p in ("a", "b", "c")])
    lenient = {"Prefer": "handling=lenient"}
    r = await client.get("Patient", params={"foo": "bar", "_count": "2"}, headers=lenient)
    assert r.status_code == 200, r.text
    links = _links(r.json())
    assert "foo" not in links["self"] and "_count=2" in links["self"]
    assert "first" in links
    r = await client.get(links["next"])  # without the Prefer header
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["c"]
    assert "previous" in _links(r.json()) and "first" in _links(r.json())


@pytest.mark.parametrize(
    ("rtype", "param", "system"),
    [
        ("Patient", "gender", "http://hl7.org/fhir/administrative-gender"),
        ("Observation", "status", "http://hl7.org/fhir/observation-status"),
    ],
)
async def test_code_elements_match_their_implied_system(
    client: httpx.AsyncClient, rtype: str, param: str, system: str
) -> None:
    await _put_all(client, [_patient("a", "male"), _patient("b", "female")])
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    await _put_all(client, [{**obs, "id": "o1"}, {**obs, "id": "o2", "status": "amended"}])
    value = "male" if rtype == "Patient" else "final"
    expected = 1
    assert await _count(client, rtype, **{param: value}) == expected
    assert await _count(client, rtype, **{param: f"{system}|{value}"}) == expected
    assert await _count(client, rtype, **{param: f"|{value}"}) == expected  # no system: as stored
    assert await _count(client, rtype, **{param: f"http://other.org|{value}"}) == 0
    assert await _count(client, rtype, **{param: f"{system}|"}) == 2
    assert await _count(client, rtype, **{f"{param}:not": f"{system}|{value}"}) == 1


async def test_compartment_star_and_post_search(client: httpx.AsyncClient) -> None:
    await _put_all(client, [_patient("a", "male"), _patient("b", "male")])
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "VR"}}
    await _put_all(
        client,
        [
            {**obs, "id": "o1", "subject": {"reference": "Patient/a"}},
            {**obs, "id": "o2", "subject": {"reference": "Patient/b"}},
            {**enc, "id": "e1", "subject": {"reference": "Patient/a"}},
        ],
    )
    r = await client.get("Patient/a/*")
    assert r.status_code == 200, r.text
    found = sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json()["entry"]
    )
    assert found == ["Encounter/e1", "Observation/o1"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await client.post("Patient/a/Observation/_search", content=b"status=final", headers=form)
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["o1"]


async def test_history_refuses_list_and_links_back(client: httpx.AsyncClient) -> None:
    await _put_all(client, [_patient(p, "male") for p in ("a", "b", "c", "d", "e")])
    r = await client.get("Patient/_history", params={"_list": "x"})
    assert r.status_code == 400, r.text
    r = await client.get("Patient/_history", params={"_count": "2"})
    page1 = r.json()
    assert "first" in _links(page1) and "previous" not in _links(page1)
    r = await client.get(_links(page1)["next"])
    page2 = r.json()
    r = await client.get(_links(page2)["next"])
    page3 = r.json()
    r = await client.get(_links(page3)["previous"])
    assert r.json()["entry"] == page2["entry"]
    r = await client.get(_links(page2)["previous"])
    assert [e["fullUrl"] for e in r.json()["entry"]] == [e["fullUrl"] for e in page1["entry"]]


@pytest.mark.parametrize(
    "query",
    ["_count=1&_count=2", "_sort=gender&_sort=-gender", "_type=Patient"],
)
async def test_result_parameter_misuse_is_400(client: httpx.AsyncClient, query: str) -> None:
    r = await client.get(f"Patient?{query}")
    assert r.status_code == 400, r.text


def _txn(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def test_transaction_refuses_duplicate_full_urls_and_dangling_urns(
    client: httpx.AsyncClient,
) -> None:
    uid = "urn:uuid:11111111-1111-4111-8111-111111111111"
    post = {"method": "POST", "url": "Patient"}
    entry = {"fullUrl": uid, "resource": {"resourceType": "Patient"}, "request": post}
    r = await client.post("", json=_txn([entry, entry]))
    assert r.status_code == 400, r.text
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"},
    }
    r = await client.post(
        "",
        json=_txn([entry, {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]),
    )
    assert r.status_code == 400, r.text
    assert await _count(client, "Patient") == 0 and await _count(client, "Observation") == 0
    obs["subject"] = {"reference": uid}  # resolvable: fine
    r = await client.post(
        "",
        json=_txn([entry, {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]),
    )
    assert r.status_code == 200, r.text


def test_openapi_lists_operations_and_compartment_search() -> None:
    import orjson

    from fhir_server.openapi import openapi_bytes

    paths = orjson.loads(openapi_bytes())["paths"]
    for path in (
        "/fhir/{type}/$validate",
        "/fhir/Observation/$lastn",
        "/fhir/Patient/{id}/$everything",
        "/fhir/Patient/{id}/$rpm-billing",
        "/fhir/$export",
        "/fhir/$export-status/{job_id}",
        "/fhir/Patient/{id}/{type}",
        "/fhir/Patient/{id}/{type}/_search",
    ):
        assert path in paths, path


async def test_patch_merge_patch_and_missing_resource_type_messages(
    client: httpx.AsyncClient,
) -> None:
    await _put_all(client, [_patient("a", "male")])
    r = await client.patch(
        "Patient/a",
        content=b'{"gender": "female"}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 415
    assert "application/json-patch+json" in r.json()["issue"][0]["diagnostics"]
    r = await client.post("Patient", json={})
    assert r.status_code == 400
    text = r.json()["issue"][0]["diagnostics"]
    assert "None" not in text and "no resourceType" in text


async def test_decimal_with_exponent_reads_back_exactly(client: httpx.AsyncClient) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":1.5e2}}'
    )
    r = await client.post(
        "Observation", content=body, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 201, r.text
    r = await client.get(r.headers["location"])
    assert b'"value":1.5e2' in r.content


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"resourceType":"Patient","gender":"male","gender":"female"}', 400),
        (b'{"resourceType":"Patient","id":null}', 422),
        (b'{"resourceType":"Patient","extension":[{"url":"http://example.org/e"}]}', 422),
        (
            b'{"resourceType":"Patient","extension":[{"url":"http://example.org/e",'
            b'"valueString":"x","extension":[{"url":"a","valueString":"y"}]}]}',
            422,
        ),
        (
            b'{"resourceType":"Patient","birthDate":"2000-01-01",'
            b'"_birthDate":{"extension":[{"url":"http://example.org/e"}]}}',
            422,
        ),
    ],
)
async def test_malformed_resources_are_refused(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    r = await client.post(
        "Patient", content=body, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_batch_entry_url_may_carry_a_system_url_in_its_query(
    client: httpx.AsyncClient,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation?code=http://loinc.org|8867-4"}},
            {"request": {"method": "GET", "url": "http://elsewhere.example/fhir/Patient/1"}},
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("200")
    assert statuses[1].startswith("400")


async def test_prefer_operation_outcome_applies_to_each_transaction_entry(
    client: httpx.AsyncClient,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "active": True},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    r = await client.post("", json=bundle, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 200
    entry = r.json()["entry"][0]
    assert "resource" not in entry
    assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entry["response"]["status"].startswith("201")
