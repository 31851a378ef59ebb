"""SMART.md §2 A (discovery, 1-5), C 15-16 (openid-configuration, JWKS) and the CapabilityStatement
oauth-uris extension."""

from __future__ import annotations

import pytest

from tests.auth.server.conftest import BASE, ORIGIN, Env

CAPABILITIES = {
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-banner",
    "context-style",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
}


@pytest.mark.parametrize("accept", [None, "text/html", "application/fhir+xml", "*/*"])
async def test_smart_configuration_is_json_whatever_accept(env: Env, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    headers["Origin"] = "https://inferno.example"
    r = await env.http.get("/fhir/.well-known/smart-configuration", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["access-control-allow-origin"] == "*"
    doc = r.json()
    assert doc["authorization_endpoint"] == f"{ORIGIN}/auth/authorize"
    assert doc["token_endpoint"] == f"{ORIGIN}/auth/token"
    assert doc["introspection_endpoint"] == f"{ORIGIN}/auth/introspect"
    assert doc["revocation_endpoint"] == f"{ORIGIN}/auth/revoke"
    assert doc["registration_endpoint"] == f"{ORIGIN}/auth/register"
    assert doc["issuer"] == ORIGIN and doc["jwks_uri"] == f"{ORIGIN}/auth/jwks"
    assert set(doc["capabilities"]) == CAPABILITIES
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in doc["grant_types_supported"]
    assert "client_credentials" in doc["grant_types_supported"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "private_key_jwt",
    }
    assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert doc["response_types_supported"] == ["code"]
    assert "launch/patient" in doc["scopes_supported"]
    for value in doc.values():
        if isinstance(value, str) and value.startswith("http"):
            assert value.startswith(ORIGIN)  # absolute URLs from the public URL


async def test_cors_preflight(env: Env) -> None:
    r = await env.http.options(
        "/fhir/.well-known/smart-configuration",
        headers={"Origin": "https://x.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"


async def test_openid_configuration_and_jwks(env: Env) -> None:
    r = await env.http.get("/.well-known/openid-configuration", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    for field in (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
    ):
        assert doc[field]
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    jwks = (await env.http.get("/auth/jwks")).json()
    rsa = [k for k in jwks["keys"] if k["kty"] == "RSA"]
    assert rsa and all("d" not in k and k["kid"] for k in jwks["keys"])


async def test_metadata_carries_oauth_uris(env: Env) -> None:
    r = await env.http.get("/fhir/metadata")
    assert r.status_code == 200
    security = r.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    ext = security["extension"][0]
    assert ext["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    assert uris["authorize"] == f"{ORIGIN}/auth/authorize"
    assert uris["token"] == f"{ORIGIN}/auth/token"


async def test_public_url_fixes_the_base(env: Env) -> None:
    assert env.srv.urls.fhir_base == BASE
