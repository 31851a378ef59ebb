"""CORS on the FHIR API (fhir_server/api/cors.py): browser SMART apps call /fhir cross-origin with
`Authorization: Bearer`; preflights need no token and errors are readable (SMART.md 1.2 "CORS",
2.5)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import BASE
from tests.auth.enforcement.conftest import Server

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = "https://app.example"
ORIGIN = BASE.split("/fhir")[0]
EXPOSED = {"location", "etag", "last-modified", "content-location", "x-progress", "retry-after"}


def _list(value: str) -> set[str]:
    return {v.strip().lower() for v in value.split(",")}


def _assert_cors(headers: httpx.Headers) -> None:
    h = dict(headers)
    assert h["access-control-allow-origin"] == "*"
    assert _list(h["access-control-expose-headers"]) >= EXPOSED
    assert "access-control-allow-credentials" not in h


@pytest.mark.parametrize(
    "path", ["Patient/p1", "Observation", "", "Patient/p1/_history", "metadata", "$export"]
)
async def test_preflight_needs_no_token(shared: Server, path: str) -> None:
    resp = await shared.http.options(
        path,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization,content-type,if-match,prefer",
        },
    )
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    methods = _list(resp.headers["access-control-allow-methods"])
    assert {"get", "head", "post", "put", "patch", "delete"} <= methods
    allowed = _list(resp.headers["access-control-allow-headers"])
    assert {
        "authorization",
        "content-type",
        "prefer",
        "if-match",
        "if-none-exist",
        "if-none-match",
        "if-modified-since",
    } <= allowed
    assert int(resp.headers["access-control-max-age"]) > 0


async def test_401_and_403_carry_cors_headers(shared: Server) -> None:
    """A browser can only read an error's status and body when the error carries CORS headers."""
    resp = await shared.http.get("Patient/p1", headers={"Origin": APP})
    assert resp.status_code == 401
    _assert_cors(resp.headers)
    assert "www-authenticate" in _list(resp.headers["access-control-expose-headers"])
    h = {"Origin": APP, **shared.scopes("patient/Patient.rs")}
    resp = await shared.http.get("Observation", headers=h)
    assert resp.status_code == 403
    _assert_cors(resp.headers)


async def test_successful_calls_carry_cors_headers(shared: Server) -> None:
    h = {"Origin": APP, **shared.scopes("patient/*.rs")}
    for path in ("Patient/p1", "Observation", "metadata"):
        resp = await shared.http.get(path, headers=h)
        assert resp.status_code == 200, path
        _assert_cors(resp.headers)
    # The headers are sent whether or not the request names an Origin (cache-safe, no Vary).
    _assert_cors((await shared.http.get("metadata")).headers)


async def test_write_exposes_location_and_etag(server: Server) -> None:
    h = {"Origin": APP, **server.admin}
    resp = await server.http.post("Patient", json={"resourceType": "Patient"}, headers=h)
    assert resp.status_code == 201
    _assert_cors(resp.headers)
    assert resp.headers["location"] and resp.headers["etag"]


async def test_other_paths_are_not_opened(shared: Server) -> None:
    """Only the FHIR API: the login and consent pages stay same-origin."""
    resp = await shared.http.get(ORIGIN + "/healthz", headers={"Origin": APP})
    assert "access-control-allow-origin" not in resp.headers
    resp = await shared.http.options(
        ORIGIN + "/auth/authorize", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in resp.headers


async def test_options_without_preflight_is_not_an_interaction(shared: Server) -> None:
    resp = await shared.http.options("Patient/p1")
    assert resp.status_code == 405
    _assert_cors(resp.headers)
