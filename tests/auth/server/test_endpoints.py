"""Introspection (§2 item 30), registration, EHR launch (§2 B 7, 12-13), and the resource server's
token check (§2 item 11 and wrong audience / bad signature / rotation / revocation across
workers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fhir_server.auth.server.core import ACCESS_TOKEN_TYP
from fhir_server.auth.server.store import SqliteAuthStore, auth_store_path
from fhir_server.errors import Unauthorized
from tests.auth.server.conftest import (
    BASE,
    JWT_BEARER,
    REDIRECT,
    Env,
    assertion,
    auth_params,
    consent,
    ec_key,
    exchange,
    get_code,
    login,
    pkce,
    public_jwks,
    redirect_query,
    rsa_key,
)
from tests.auth.server.test_client_auth import backend_client, basic, cc

SCOPE = "launch/patient openid fhirUser offline_access patient/Patient.rs"


async def _launch_token(env: Env, scope: str = "system/*.rs system/launch") -> str:
    key = ec_key()
    cid = await backend_client(env, key, scope=scope)
    r = await cc(env, assertion(key, cid), scope=scope)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def test_introspection(env: Env) -> None:
    client, secret = await env.add_client(token_endpoint_auth_method="client_secret_basic")
    code, verifier = await get_code(env, client.client_id, SCOPE)
    body = (
        await exchange(
            env, client.client_id, code, verifier, headers=basic(client.client_id, secret or "")
        )
    ).json()
    r = await env.http.post(
        "/auth/introspect",
        data={"token": body["access_token"]},
        headers=basic(client.client_id, secret or ""),
    )
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert doc["active"] is True and doc["client_id"] == client.client_id
    assert set(doc["scope"].split()) == set(body["scope"].split())
    assert isinstance(doc["exp"], int) and doc["patient"] == "pat1"
    assert doc["iss"] and doc["sub"] == "alice" and doc["fhirUser"] == f"{BASE}/Patient/pat1"
    # by bearer token carrying system/*.rs
    system = await _launch_token(env)
    r = await env.http.post(
        "/auth/introspect",
        data={"token": body["access_token"]},
        headers={"Authorization": f"Bearer {system}"},
    )
    assert r.json()["active"] is True
    for bad in ("garbage", body["access_token"][:-4] + "AAAA"):
        r = await env.http.post(
            "/auth/introspect", data={"token": bad}, headers={"Authorization": f"Bearer {system}"}
        )
        assert r.status_code == 200 and r.json() == {"active": False}
    # refresh tokens introspect too; revoked ones are inactive
    r = await env.http.post(
        "/auth/introspect",
        data={"token": body["refresh_token"]},
        headers=basic(client.client_id, secret or ""),
    )
    assert r.json()["active"] is True and r.json()["client_id"] == client.client_id
    await env.http.post(
        "/auth/revoke",
        data={"token": body["access_token"]},
        headers=basic(client.client_id, secret or ""),
    )
    r = await env.http.post(
        "/auth/introspect",
        data={"token": body["access_token"]},
        headers=basic(client.client_id, secret or ""),
    )
    assert r.json() == {"active": False}


async def test_introspection_needs_authorization(env: Env) -> None:
    public, _ = await env.add_client()
    r = await env.http.post("/auth/introspect", data={"token": "x"})
    assert r.status_code == 401
    r = await env.http.post("/auth/introspect", data={"token": "x", "client_id": public.client_id})
    assert r.status_code == 401
    narrow = await _launch_token(env, scope="system/Observation.rs")
    r = await env.http.post(
        "/auth/introspect", data={"token": "x"}, headers={"Authorization": f"Bearer {narrow}"}
    )
    assert r.status_code == 403
    r = await env.http.post(
        "/auth/introspect", data={"token": "x"}, headers={"Authorization": "Bearer nonsense"}
    )
    assert r.status_code == 401


async def test_dynamic_registration(env: Env) -> None:
    meta = {
        "client_name": "Registered",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "launch/patient patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs offline_access",
    }
    r = await env.http.post("/auth/register", json=meta)
    assert r.status_code == 401
    r = await env.http.post("/auth/register", json=meta, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = await env.http.post(
        "/auth/register", json=meta, headers={"Authorization": "Bearer reg-secret-token"}
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["client_id"] and "client_secret" not in doc and doc["scope"] == meta["scope"]
    code, verifier = await get_code(env, doc["client_id"], "launch/patient patient/Observation.rs")
    granted = (await exchange(env, doc["client_id"], code, verifier)).json()["scope"]
    assert granted == "launch/patient " + meta["scope"].split()[1]  # narrowed to the registration
    # symmetric and asymmetric clients
    r = await env.http.post(
        "/auth/register",
        headers={"Authorization": "Bearer reg-secret-token"},
        json={"redirect_uris": [REDIRECT]},
    )
    assert r.status_code == 201 and r.json()["client_secret"]
    assert r.json()["token_endpoint_auth_method"] == "client_secret_basic"
    key = rsa_key()
    r = await env.http.post(
        "/auth/register",
        headers={"Authorization": "Bearer reg-secret-token"},
        json={
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": public_jwks(key),
            "scope": "system/*.rs",
        },
    )
    assert r.status_code == 201
    assert (await cc(env, assertion(key, r.json()["client_id"]))).status_code == 200
    for bad in (
        {"redirect_uris": ["not a uri#frag"]},
        {"token_endpoint_auth_method": "private_key_jwt", "redirect_uris": [REDIRECT]},
        {"grant_types": ["client_credentials"], "scope": "system/*.rs"},
        {"grant_types": ["password"]},
    ):
        r = await env.http.post(
            "/auth/register", json=bad, headers={"Authorization": "Bearer reg-secret-token"}
        )
        assert r.status_code == 400 and r.json()["error"].startswith("invalid_"), bad


async def test_registration_is_off_without_a_token(env: Env) -> None:
    env.srv.settings.registration_token = None
    r = await env.http.post(
        "/auth/register", json={}, headers={"Authorization": "Bearer reg-secret-token"}
    )
    assert r.status_code == 404
    doc = (await env.http.get("/fhir/.well-known/smart-configuration")).json()
    assert "registration_endpoint" not in doc


async def test_ehr_launch(env: Env) -> None:
    app, _ = await env.add_client(launch_uri="https://app.example/launch")
    system = await _launch_token(env)
    r = await env.http.post(
        "/auth/launch",
        json={
            "client_id": app.client_id,
            "patient": "pat1",
            "encounter": "enc1",
            "fhirContext": [
                {"reference": "Practitioner/doc1", "role": "https://example.org/author"}
            ],
        },
        headers={"Authorization": f"Bearer {system}"},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    launch = doc["launch"]
    assert len(launch) >= 32 and doc["iss"] == BASE
    assert doc["launch_url"].startswith("https://app.example/launch?iss=")
    scope = "launch openid fhirUser online_access patient/Patient.rs patient/Encounter.rs"
    code, verifier = await get_code(env, app.client_id, scope, username="drbob", launch=launch)
    body = (await exchange(env, app.client_id, code, verifier)).json()
    assert body["patient"] == "pat1" and body["encounter"] == "enc1"
    assert body["fhirContext"] == [
        {"reference": "Practitioner/doc1", "role": "https://example.org/author"}
    ]
    assert body["need_patient_banner"] is True and body["smart_style_url"]
    assert "online_access" in body["scope"] and body["refresh_token"]
    grant = await env.services.authenticate(f"Bearer {body['access_token']}")  # type: ignore[misc]
    assert grant.encounter == "enc1" and grant.patient == "pat1"
    # single use
    _, challenge = pkce()
    r = await env.http.get(
        "/auth/authorize", params=auth_params(app.client_id, scope, challenge, launch=launch)
    )
    assert redirect_query(r)["error"] == "invalid_request"
    # a made-up launch value fails too
    r = await env.http.get(
        "/auth/authorize",
        params=auth_params(app.client_id, scope, challenge, launch=launch[:-2] + "xx"),
    )
    assert "code" not in redirect_query(r)


async def test_launch_requires_system_launch(env: Env) -> None:
    app, _ = await env.add_client()
    r = await env.http.post("/auth/launch", json={"client_id": app.client_id, "patient": "pat1"})
    assert r.status_code == 401
    token = await _launch_token(env, scope="system/*.rs")
    r = await env.http.post(
        "/auth/launch",
        json={"client_id": app.client_id, "patient": "pat1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403
    token = await _launch_token(env)
    r = await env.http.post(
        "/auth/launch",
        json={"client_id": app.client_id, "patient": "missing"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 400
    r = await env.http.post(
        "/auth/launch",
        json={"client_id": app.client_id, "patient": "pat1", "fhirContext": [{"role": "x"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 400
    r = await env.http.post(
        "/auth/launch",
        json={"client_id": "nope", "patient": "pat1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code in (400, 401)


async def test_launch_for_another_app_is_refused(env: Env) -> None:
    app, _ = await env.add_client()
    other, _ = await env.add_client()
    token = await _launch_token(env)
    launch = (
        await env.http.post(
            "/auth/launch",
            json={"client_id": app.client_id, "patient": "pat1"},
            headers={"Authorization": f"Bearer {token}"},
        )
    ).json()["launch"]
    _, challenge = pkce()
    r = await env.http.get(
        "/auth/authorize",
        params=auth_params(other.client_id, "launch patient/*.rs", challenge, launch=launch),
    )
    assert redirect_query(r)["error"] == "invalid_request"


async def _authenticate_fails(env: Env, header: str | None, expect: str | None) -> None:
    with pytest.raises(Unauthorized) as info:
        await env.services.authenticate(header)  # type: ignore[misc]
    assert info.value.status == 401
    www = info.value.headers["WWW-Authenticate"]
    assert www.startswith("Bearer")
    if expect:
        assert expect in www


async def test_authenticate_rejections(env: Env) -> None:
    await _authenticate_fails(env, None, None)
    await _authenticate_fails(env, "Basic abc", "invalid_token")
    await _authenticate_fails(env, "Bearer not.a.jwt", "invalid_token")
    token = await _launch_token(env)
    claims: dict[str, Any] = {
        "iss": env.srv.urls.issuer,
        "aud": "http://other.example/fhir",
        "client_id": "x",
        "scope": "system/*.rs",
        "jti": "j1",
        "exp": int(time.time()) + 60,
    }
    key = env.srv.keys.signing_key("RS256")
    from joserfc import jwt

    wrong_aud = jwt.encode({"alg": "RS256", "kid": key.kid, "typ": ACCESS_TOKEN_TYP}, claims, key)
    await env.srv.store.put_access("j1", None, "x", claims["exp"])
    await _authenticate_fails(env, f"Bearer {wrong_aud}", "audience")
    foreign = rsa_key(key.kid)
    forged = jwt.encode(
        {"alg": "RS256", "kid": key.kid, "typ": ACCESS_TOKEN_TYP}, {**claims, "aud": BASE}, foreign
    )
    await _authenticate_fails(env, f"Bearer {forged}", "signature")
    unknown_jti = jwt.encode(
        {"alg": "RS256", "kid": key.kid, "typ": ACCESS_TOKEN_TYP},
        {**claims, "aud": BASE, "jti": "zz"},
        key,
    )
    await _authenticate_fails(env, f"Bearer {unknown_jti}", "revoked")
    # an id_token is not an access token
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    id_token = (await exchange(env, client.client_id, code, verifier)).json()["id_token"]
    await _authenticate_fails(env, f"Bearer {id_token}", "invalid_token")
    assert await env.services.authenticate(f"bearer {token}")  # type: ignore[misc]


async def test_key_rotation(env: Env) -> None:
    token = await _launch_token(env)
    before = {k["kid"] for k in (await env.http.get("/auth/jwks")).json()["keys"]}
    from fhir_server.auth.server.keys import KeyRing

    assert isinstance(env.srv.keys, KeyRing)  # SQLite: the file (MongoDB: test_mongo_http.py)
    KeyRing(env.srv.keys.path).rotate()  # as `fhir-server keys rotate` would, from outside
    after = {k["kid"] for k in (await env.http.get("/auth/jwks")).json()["keys"]}
    assert before < after
    assert await env.services.authenticate(f"Bearer {token}")  # type: ignore[misc]  # old key still valid
    fresh = await _launch_token(env)
    assert await env.services.authenticate(f"Bearer {fresh}")  # type: ignore[misc]
    from joserfc import jws

    assert jws.extract_compact(fresh.encode()).protected["kid"] in after - before


async def test_revocation_is_seen_by_other_workers(env: Env, tmp_path: Path) -> None:
    """A second store on the same file (another worker, the CLI) sees revocation at once."""
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    body = (await exchange(env, client.client_id, code, verifier)).json()
    other = SqliteAuthStore(auth_store_path(tmp_path / "data"))
    await other.open()
    try:
        claims, _ = await env.srv.verify_access_token(body["access_token"])
        assert claims is not None and await other.access_active(claims["jti"])
        await env.http.post(
            "/auth/revoke", data={"token": body["refresh_token"], "client_id": client.client_id}
        )
        assert not await other.access_active(claims["jti"])
    finally:
        await other.close()


async def test_login_csrf_and_cookie_binding(env: Env) -> None:
    client, _ = await env.add_client()
    _, challenge = pkce()
    page = await env.http.get(
        "/auth/authorize", params=auth_params(client.client_id, SCOPE, challenge)
    )
    assert page.headers["x-frame-options"] == "DENY" and 'name="csrf_token"' in page.text
    assert 'name="username"' in page.text and 'name="password"' in page.text
    from tests.auth.server.conftest import PASSWORD, hidden_fields

    fields = hidden_fields(page.text)
    r = await env.http.post(
        "/auth/authorize",
        data={**fields, "csrf_token": "forged", "username": "alice", "password": PASSWORD},
    )
    assert r.status_code == 400 and "expired" in r.text
    cookies = dict(env.http.cookies)
    env.http.cookies.clear()
    r = await env.http.post(
        "/auth/authorize", data={**fields, "username": "alice", "password": PASSWORD}
    )
    assert r.status_code == 400
    env.http.cookies.update(cookies)
    r = await env.http.post(
        "/auth/authorize", data={**fields, "username": "alice", "password": PASSWORD}
    )
    assert r.status_code == 200 and 'name="decision"' in r.text
    # the consent form's CSRF token is a new one
    assert hidden_fields(r.text)["csrf_token"] != fields["csrf_token"]
    q = redirect_query(await consent(env.http, r))
    assert q["code"]


async def test_failed_logins_are_rate_limited(env: Env) -> None:
    from tests.auth.server.conftest import PASSWORD, hidden_fields

    client, _ = await env.add_client()
    env.srv.settings.login_max_failures_per_user = 3
    env.srv.settings.login_max_failures_per_address = 5
    _, challenge = pkce()
    page = await env.http.get(
        "/auth/authorize", params=auth_params(client.client_id, SCOPE, challenge)
    )
    fields = hidden_fields(page.text)

    async def attempt(username: str, password: str) -> int:
        r = await env.http.post(
            "/auth/authorize", data={**fields, "username": username, "password": password}
        )
        if r.status_code == 200:  # signed in: start a fresh authorization for the next attempt
            fresh = await env.http.get(
                "/auth/authorize", params=auth_params(client.client_id, SCOPE, challenge)
            )
            fields.update(hidden_fields(fresh.text))
        return r.status_code

    # successful logins are never limited
    for _ in range(6):
        assert await attempt("drbob", PASSWORD) == 200
    for _ in range(3):
        assert await attempt("alice", "wrong") == 401
    assert await attempt("alice", PASSWORD) == 429  # locked per user, even with the right password
    assert await attempt("drbob", PASSWORD) == 200  # other users from this address still fine
    assert await attempt("drbob", "wrong") == 401
    assert await attempt("drbob", "wrong") == 401
    assert await attempt("drbob", PASSWORD) == 429  # 5 failures from this address


async def test_nothing_secret_is_logged(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client, secret = await env.add_client(token_endpoint_auth_method="client_secret_basic")
    code, verifier = await get_code(env, client.client_id, SCOPE)
    body = (
        await exchange(
            env, client.client_id, code, verifier, headers=basic(client.client_id, secret or "")
        )
    ).json()
    await env.http.post(
        "/auth/token",
        headers=basic(client.client_id, secret or ""),
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
    )
    text = caplog.text
    for value in (
        code,
        verifier,
        secret,
        body["access_token"],
        body["refresh_token"],
        body["id_token"],
    ):
        assert value and value not in text


def test_access_log_filter_drops_auth_queries() -> None:
    import logging

    from fhir_server.api.auth_routes import _AuthQueryFilter

    record = logging.LogRecord(
        "uvicorn.access",
        20,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", "/auth/authorize?launch=secret&state=s", "1.1", 200),
        None,
    )
    _AuthQueryFilter().filter(record)
    assert "secret" not in record.getMessage()


async def test_auth_off_has_no_auth_server(tmp_path: Path) -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    from fhir_server.app import create_app
    from tests.api.conftest import make_settings

    app = create_app(make_settings(tmp_path))
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
        ) as http:
            assert (await http.get("/fhir/.well-known/smart-configuration")).status_code == 404
            assert "security" not in (await http.get("/fhir/metadata")).json()["rest"][0]
        assert app.state.services.authenticate is None


_ = (JWT_BEARER, login)


async def test_fhir_api_end_to_end(env: Env) -> None:
    """§2 items 11, 12, 25 over HTTP: no token 401, the token reads the patient in context,
    revoked 401 (WWW-Authenticate: Bearer on every 401)."""
    r = await env.http.get("/fhir/Patient/pat1")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert (await env.http.get("/fhir/metadata")).status_code == 200
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    body = (await exchange(env, client.client_id, code, verifier)).json()
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    r = await env.http.get(f"/fhir/Patient/{body['patient']}", headers=auth)
    assert r.status_code == 200 and r.json()["resourceType"] == "Patient"
    r = await env.http.get("/fhir/Patient/pat1", headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]
    await env.http.post(
        "/auth/revoke", data={"token": body["access_token"], "client_id": client.client_id}
    )
    r = await env.http.get("/fhir/Patient/pat1", headers=auth)
    assert r.status_code == 401 and "revoked" in r.headers["www-authenticate"]
