"""CapabilityStatement, OpenAPI document and Swagger UI."""

from __future__ import annotations

from pathlib import Path

import httpx

from fhir_server.fhir.resource_types import resource_types
from fhir_server.openapi import openapi_bytes

ROOT = Path(__file__).resolve().parents[2]


async def test_capability_statement(client: httpx.AsyncClient) -> None:
    r = await client.get("metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    rest = cs["rest"][0]
    types = {res["type"] for res in rest["resource"]}
    assert types == set(resource_types())
    obs = next(res for res in rest["resource"] if res["type"] == "Observation")
    codes = {i["code"] for i in obs["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type"} <= codes
    params = {p["name"]: p["type"] for p in obs["searchParam"]}
    assert params["code"] == "token"
    assert params["date"] == "date"
    assert params["subject"] == "reference"
    assert params["value-quantity"] == "quantity"
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}


def test_openapi_file_is_current() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_bytes()
    assert committed == openapi_bytes(pretty=True), (
        "openapi/openapi.json is stale: run `make openapi` (fhir-server openapi --out openapi/openapi.json)"
    )


async def test_openapi_and_docs_served(client: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert "/fhir/Observation/{id}" in doc["paths"]
    assert "/fhir/Patient" in doc["paths"]
    r = await client.get("http://testserver/docs")
    assert r.status_code == 200
    assert "swagger" in r.text.lower()
