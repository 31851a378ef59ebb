"""Regression tests for defects a black-box review found in the authorization server: scope
narrowing to the registration (Backend Services and user-facing apps), introspection echoing the
whole launch context, sensitive query parameters in access-log lines, semantic refresh narrowing,
the assertion `typ` header, revoking another client's token, tokens of removed clients, launch
encounters of another patient, malformed scopes at registration."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from joserfc import jws

from fhir_server.app import create_app
from fhir_server.auth.server import scopeset
from tests.api.conftest import make_settings
from tests.auth.server.conftest import (
    TOKEN_URL,
    Env,
    auth_params,
    checkbox_scopes,
    ec_key,
    exchange,
    get_code,
    login,
    pkce,
)
from tests.auth.server.live import free_port
from tests.auth.server.test_client_auth import backend_client, cc
from tests.auth.server.test_endpoints import _launch_token


def test_narrow_is_a_semantic_intersection() -> None:
    assert scopeset.narrow(["system/*.rs", "system/launch"], ["system/*.cruds"]) == ["system/*.rs"]
    both = ["system/Patient.rs", "system/Observation.rs"]
    assert scopeset.narrow(both, ["system/*.rs"]) == both
    assert scopeset.narrow(both, ["system/*.read"]) == both
    assert scopeset.narrow(both, ["system/Condition.rs", "system/launch"]) == []
    assert scopeset.narrow(["patient/*.read"], ["patient/Observation.cruds?category=a|b"]) == [
        "patient/Observation.rs?category=a|b"
    ]
    assert scopeset.narrow(["user/*.rs"], ["user/Observation.rs"]) == ["user/Observation.rs"]


async def test_backend_services_broader_scope_is_narrowed(env: Env) -> None:
    key = ec_key()
    cid = await backend_client(env, key, scope="system/*.rs system/launch")
    r = await cc(env, _assertion(key, cid), scope="system/*.cruds")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/*.rs"
    key2 = ec_key("k2")
    cid2 = await backend_client(env, key2, scope="system/Patient.rs system/Observation.rs")
    for asked in ("system/*.rs", "system/*.read"):
        r = await cc(env, _assertion(key2, cid2), scope=asked)
        assert r.status_code == 200, r.text
        assert r.json()["scope"].split() == ["system/Patient.rs", "system/Observation.rs"]
    r = await cc(env, _assertion(key2, cid2), scope="system/Condition.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_user_facing_broader_scope_is_narrowed(env: Env) -> None:
    client, _ = await env.add_client(
        scope="launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs"
    )
    _, challenge = pkce()
    params = auth_params(client.client_id, "launch/patient openid patient/*.cruds", challenge)
    page = await login(env.http, params, "alice")
    offered = checkbox_scopes(page.text, checked_only=False)
    assert "patient/Patient.rs" in offered and "patient/Observation.rs" in offered
    assert not any(s.startswith("patient/*") for s in offered)


async def test_introspection_echoes_launch_context(env: Env) -> None:
    app, _ = await env.add_client(launch_uri="https://app.example/launch")
    system = await _launch_token(env)
    context = [{"reference": "Practitioner/doc1", "role": "https://example.org/author"}]
    r = await env.http.post(
        "/auth/launch",
        json={"client_id": app.client_id, "patient": "pat1", "fhirContext": context},
        headers={"Authorization": f"Bearer {system}"},
    )
    assert r.status_code == 201, r.text
    scope = "launch openid fhirUser online_access patient/Patient.rs"
    code, verifier = await get_code(
        env, app.client_id, scope, username="drbob", launch=r.json()["launch"]
    )
    body = (await exchange(env, app.client_id, code, verifier)).json()
    r = await env.http.post(
        "/auth/introspect",
        data={"token": body["access_token"]},
        headers={"Authorization": f"Bearer {system}"},
    )
    doc = r.json()
    assert doc["active"] is True
    for name in ("patient", "fhirContext", "need_patient_banner", "smart_style_url"):
        assert doc[name] == body[name], name
    r = await env.http.post(
        "/auth/introspect",
        data={"token": body["refresh_token"]},
        headers={"Authorization": f"Bearer {system}"},
    )
    doc = r.json()
    assert doc["active"] is True
    for name in ("patient", "fhirContext", "need_patient_banner", "smart_style_url"):
        assert doc[name] == body[name], name


def test_access_log_redacts_sensitive_parameters_everywhere() -> None:
    from fhir_server.api.auth_routes import redact_path

    secret = "eyJhbGciOi.payload.signature"
    for name in ("access_token", "code", "client_secret", "client_assertion", "refresh_token",
                 "token", "password"):  # fmt: skip
        out = redact_path(f"/fhir/Patient/x?_format=json&{name}={secret}&b=2")
        assert secret not in out and "_format=json" in out and "b=2" in out
    assert redact_path("/fhir/Patient?name=Doe") == "/fhir/Patient?name=Doe"
    assert secret not in redact_path(f"/auth/authorize?code={secret}")


async def test_live_access_log_has_no_query_token(tmp_path: Path) -> None:
    """A real uvicorn: the access-log line of `?access_token=<JWT>` does not carry the JWT."""
    port = free_port()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    config = uvicorn.Config(
        create_app(make_settings(tmp_path)),
        host="127.0.0.1",
        port=port,
        log_level="info",
        lifespan="on",
        ws="none",
    )
    server = uvicorn.Server(config)
    handler = Collect()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            await asyncio.sleep(0.05)
        jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0." + secrets.token_urlsafe(16)
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/fhir/Patient/x?access_token={jwt_like}")
        deadline = time.monotonic() + 5
        while not any("/fhir/Patient/x" in line for line in lines):
            assert time.monotonic() < deadline, lines
            await asyncio.sleep(0.05)
    finally:
        access.removeHandler(handler)
        server.should_exit = True
        thread.join(timeout=15)
    assert not any(jwt_like in line for line in lines)
    assert any("access_token=REDACTED" in line for line in lines)


async def test_refresh_narrowing_is_semantic(env: Env) -> None:
    client, _ = await env.add_client()
    scope = "launch/patient openid fhirUser offline_access patient/*.rs"
    code, verifier = await get_code(env, client.client_id, scope)
    body = (await exchange(env, client.client_id, code, verifier)).json()
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": client.client_id,
            "scope": "patient/Patient.rs launch/patient",
        },
    )
    assert r.status_code == 200, r.text
    assert set(r.json()["scope"].split()) == {"patient/Patient.rs", "launch/patient"}
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": r.json()["refresh_token"],
            "client_id": client.client_id,
            "scope": "patient/Patient.cruds",
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def _assertion(key: Any, client_id: str, header: dict[str, Any] | None = None) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "jti": secrets.token_hex(12),
    }
    h = header if header is not None else {"alg": "ES384", "kid": key.kid, "typ": "JWT"}
    # jws, not jwt.encode: joserfc's jwt.encode adds typ=JWT to a header without one
    return jws.serialize_compact(h, json.dumps(claims), key, algorithms=[h["alg"]])


async def test_assertion_typ_header_is_required(env: Env) -> None:
    key = ec_key()
    cid = await backend_client(env, key)
    for header in (
        {"alg": "ES384", "kid": key.kid},
        {"alg": "ES384", "kid": key.kid, "typ": "at+jwt"},
    ):
        r = await cc(env, _assertion(key, cid, header))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", header
    assert (await cc(env, _assertion(key, cid))).status_code == 200


async def test_revoking_another_clients_token_is_refused(env: Env) -> None:
    owner, _ = await env.add_client()
    other, _ = await env.add_client()
    code, verifier = await get_code(
        env, owner.client_id, "launch/patient offline_access patient/*.rs"
    )
    body = (await exchange(env, owner.client_id, code, verifier)).json()
    for token in (body["access_token"], body["refresh_token"]):
        r = await env.http.post("/auth/revoke", data={"token": token, "client_id": other.client_id})
        assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    h = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await env.http.get("/fhir/Patient/pat1", headers=h)).status_code == 200
    # unknown tokens still answer 200 (RFC 7009 §2.2)
    r = await env.http.post("/auth/revoke", data={"token": "nope", "client_id": other.client_id})
    assert r.status_code == 200


async def test_removed_clients_tokens_stop_working(env: Env) -> None:
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, "launch/patient patient/*.rs")
    body = (await exchange(env, client.client_id, code, verifier)).json()
    h = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await env.http.get("/fhir/Patient/pat1", headers=h)).status_code == 200
    assert await env.srv.store.delete_client(client.client_id)  # what `clients remove` calls
    r = await env.http.get("/fhir/Patient/pat1", headers=h)
    assert r.status_code == 401


async def test_launch_refuses_an_encounter_of_another_patient(env: Env) -> None:
    app, _ = await env.add_client(launch_uri="https://app.example/launch")
    system = await _launch_token(env)
    auth = {"Authorization": f"Bearer {system}"}
    r = await env.http.post(
        "/auth/launch",
        json={"client_id": app.client_id, "patient": "pat2", "encounter": "enc1"},
        headers=auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    for encounter in ("enc1", "not-synced-yet"):
        r = await env.http.post(
            "/auth/launch",
            json={"client_id": app.client_id, "patient": "pat1", "encounter": encounter},
            headers=auth,
        )
        assert r.status_code == 201, (encounter, r.text)


async def test_registration_refuses_malformed_scopes(env: Env) -> None:
    auth = {"Authorization": "Bearer reg-secret-token"}
    base = {"client_name": "x", "redirect_uris": ["https://app.example/cb"]}
    for scope in ("patient/Foo.zz", "launch/patient patient/Observation.dus", "user/*.rx"):
        r = await env.http.post("/auth/register", json={**base, "scope": scope}, headers=auth)
        assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata", scope
    ok = "launch/patient openid patient/Observation.rs?category=a|b patient/*.read"
    r = await env.http.post("/auth/register", json={**base, "scope": ok}, headers=auth)
    assert r.status_code == 201, r.text


async def test_auth_endpoints_403_carry_insufficient_scope(env: Env) -> None:
    narrow = await _launch_token(env, scope="system/Patient.rs")
    auth = {"Authorization": f"Bearer {narrow}"}
    launch = await env.http.post("/auth/launch", headers=auth, json={"client_id": "x"})
    introspect = await env.http.post("/auth/introspect", headers=auth, data={"token": "x"})
    for r in (launch, introspect):
        assert r.status_code == 403
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
