"""Confidential clients: client_secret_basic, private_key_jwt (RS384/ES384, inline JWKS and JWKS
URL, replay, exp cap, jku, key selection) and Backend Services (SMART.md §2 E 29, F 32-35)."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from fhir_server.errors import Unauthorized
from tests.auth.server.conftest import (
    JWT_BEARER,
    TOKEN_URL,
    Env,
    assertion,
    ec_key,
    exchange,
    get_code,
    public_jwks,
    rsa_key,
)

SCOPE = "launch/patient openid fhirUser offline_access patient/Patient.rs"
JWKS_URL = "https://client.example/jwks.json"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def test_symmetric_client(env: Env) -> None:
    client, secret = await env.add_client(token_endpoint_auth_method="client_secret_basic")
    assert secret
    code, verifier = await get_code(env, client.client_id, SCOPE)
    wrong = await exchange(
        env, client.client_id, code, verifier, headers=basic(client.client_id, "nope")
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    code, verifier = await get_code(env, client.client_id, SCOPE)
    unauthenticated = await exchange(env, client.client_id, code, verifier)
    assert unauthenticated.status_code == 401
    code, verifier = await get_code(env, client.client_id, SCOPE)
    ok = await exchange(
        env, client.client_id, code, verifier, headers=basic(client.client_id, secret)
    )
    assert ok.status_code == 200, ok.text
    # PKCE is mandatory for confidential clients too
    code, _ = await get_code(env, client.client_id, SCOPE)
    r = await exchange(env, client.client_id, code, None, headers=basic(client.client_id, secret))  # type: ignore[arg-type]
    assert r.status_code == 400
    # refresh with Basic
    r = await env.http.post(
        "/auth/token",
        headers=basic(client.client_id, secret),
        data={"grant_type": "refresh_token", "refresh_token": ok.json()["refresh_token"]},
    )
    assert r.status_code == 200


@pytest.mark.parametrize("kind", ["RS384", "ES384"])
async def test_asymmetric_launch_inline_jwks(env: Env, kind: str) -> None:  # §2 item 29
    key = rsa_key() if kind == "RS384" else ec_key()
    client, _ = await env.add_client(
        token_endpoint_auth_method="private_key_jwt", jwks=public_jwks(key)
    )
    code, verifier = await get_code(env, client.client_id, SCOPE)
    r = await exchange(
        env,
        client.client_id,
        code,
        verifier,
        data={
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion(key, client.client_id),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == "pat1" and body["id_token"]
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion(key, client.client_id),
        },
    )
    assert r.status_code == 200 and r.json()["patient"] == "pat1"
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "invalid",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion(key, client.client_id),
        },
    )
    assert r.status_code in (400, 401)


async def backend_client(
    env: Env, key: Any, scope: str = "system/*.rs system/launch", **meta: Any
) -> str:
    meta.setdefault("jwks", public_jwks(key))
    client, _ = await env.add_client(
        token_endpoint_auth_method="private_key_jwt",
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope=scope,
        **meta,
    )
    return client.client_id


async def cc(
    env: Env, client_assertion: str, scope: str = "system/*.rs", **extra: str
) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": client_assertion,
        **extra,
    }
    return await env.http.post("/auth/token", data=data)


async def test_backend_services(env: Env) -> None:  # §2 F 32-35
    key = ec_key()
    cid = await backend_client(env, key)
    r = await cc(
        env, assertion(key, cid), scope="system/Observation.rs system/*.cruds patient/*.rs"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"].lower() == "bearer" and isinstance(body["expires_in"], int)
    assert 0 < body["expires_in"] <= 300 and "refresh_token" not in body
    # limited to the registration (system/*.rs): *.cruds narrowed to *.rs, patient/ dropped
    assert body["scope"] == "system/Observation.rs system/*.rs"
    assert r.headers["cache-control"] == "no-store"
    grant = await env.services.authenticate(f"Bearer {body['access_token']}")  # type: ignore[misc]
    assert grant.client_id == cid and grant.subject is None and grant.patient is None
    r = await cc(env, assertion(key, cid), scope="patient/*.cruds user/Patient.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await cc(env, assertion(key, cid), grant_type="not_a_grant_type")
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await cc(env, assertion(key, cid), client_assertion_type="not_an_assertion_type")
    assert r.status_code in (400, 401)
    r = await cc(env, assertion(ec_key(), cid))  # signed with the wrong key, same kid
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    assert "error_description" in r.json()


async def test_assertion_rules(env: Env) -> None:
    key = rsa_key()
    cid = await backend_client(env, key)
    fixed = assertion(key, cid)
    assert (await cc(env, fixed)).status_code == 200
    replay = await cc(env, fixed)
    assert replay.status_code == 401 and "jti" in replay.json()["error_description"]
    now = int(time.time())
    bad = {
        "exp too far": assertion(key, cid, lifetime=400),
        "expired": assertion(key, cid, lifetime=-120),
        "aud": assertion(key, cid, aud="https://elsewhere.example/token"),
        "iss != sub": assertion(key, cid, sub="someone-else"),
        "no jti": assertion(key, cid, jti=None),
        "typ": assertion(key, cid, header={"typ": "at+jwt"}),
        "RS256": assertion(key, cid, alg="RS256"),
        "jku": assertion(key, cid, header={"jku": "https://evil.example/jwks"}),
        "iat in future": assertion(key, cid, iat=now + 600),
        "unknown kid": assertion(rsa_key("other"), cid),
    }
    for why, value in bad.items():
        r = await cc(env, value)
        assert r.status_code == 401, why
        assert r.json()["error"] == "invalid_client", why
    # the 5-minute cap: exactly 300 s ahead is fine
    assert (await cc(env, assertion(key, cid, lifetime=300))).status_code == 200


async def test_jwks_url_and_jku(env: Env) -> None:
    key = ec_key()
    fetched: list[str] = []
    served: dict[str, Any] = {"body": public_jwks(key), "status": 200}

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(request.headers["accept"])
        return httpx.Response(served["status"], json=served["body"])

    env.srv.jwks_cache.transport = httpx.MockTransport(handler)
    cid = await backend_client(env, key, jwks=None, jwks_uri=JWKS_URL)
    assert (await cc(env, assertion(key, cid))).status_code == 200
    assert fetched == ["application/json"]
    assert (await cc(env, assertion(key, cid, header={"jku": JWKS_URL}))).status_code == 200
    assert len(fetched) == 2  # no Cache-Control: not cached
    assert (
        await cc(env, assertion(key, cid, header={"jku": "https://client.example/other"}))
    ).status_code == 401
    served["body"] = {
        "keys": [dict(public_jwks(key)["keys"][0]), dict(public_jwks(key)["keys"][0])]
    }
    assert (await cc(env, assertion(key, cid))).status_code == 401  # two matching keys
    served["body"], served["status"] = {"keys": []}, 200
    assert (await cc(env, assertion(key, cid))).status_code == 401
    served["status"] = 500
    assert (await cc(env, assertion(key, cid))).status_code == 401


async def test_client_credentials_needs_a_backend_client(env: Env) -> None:
    client, secret = await env.add_client(
        token_endpoint_auth_method="client_secret_basic", scope="system/*.rs"
    )
    r = await env.http.post(
        "/auth/token",
        headers=basic(client.client_id, secret or ""),
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
    )
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    public, _ = await env.add_client()
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_id": public.client_id,
        },
    )
    assert r.status_code == 400


async def test_backend_token_is_rejected_after_expiry(env: Env) -> None:
    key = ec_key()
    cid = await backend_client(env, key)
    env.srv.settings.backend_token_lifetime = 1
    token = (await cc(env, assertion(key, cid))).json()["access_token"]
    assert await env.services.authenticate(f"Bearer {token}")  # type: ignore[misc]
    time.sleep(2.1)
    with pytest.raises(Unauthorized) as info:
        await env.services.authenticate(f"Bearer {token}")  # type: ignore[misc]
    assert "expired" in info.value.headers["WWW-Authenticate"]


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    import json

    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}."


async def test_alg_none_and_hmac_are_refused(env: Env) -> None:  # pitfall 7
    key = rsa_key()
    cid = await backend_client(env, key)
    claims = {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": int(time.time()) + 60, "jti": "n1"}
    r = await cc(env, _unsigned({"alg": "none", "kid": key.kid, "typ": "JWT"}, claims))
    assert r.status_code == 401
    from joserfc import jwt
    from joserfc.jwk import OctKey

    hs = jwt.encode(
        {"alg": "HS256", "kid": key.kid, "typ": "JWT"},
        {**claims, "jti": "n2"},
        OctKey.import_key("k" * 32),
    )
    assert (await cc(env, hs)).status_code == 401


async def test_plain_http_jwks_url_is_not_fetched(env: Env) -> None:  # pitfall 8
    key = ec_key()
    fetched: list[str] = []
    env.srv.jwks_cache.transport = httpx.MockTransport(
        lambda r: fetched.append(str(r.url)) or httpx.Response(200, json=public_jwks(key))
    )
    with pytest.raises(ValueError, match="https"):
        await backend_client(env, key, jwks=None, jwks_uri="http://client.example/jwks")
    cid = await backend_client(env, key, jwks=None, jwks_uri=JWKS_URL)
    client = await env.srv.store.get_client(cid)
    assert client is not None
    client.jwks_uri = "http://client.example/jwks"  # e.g. a store edited by hand
    await env.srv.store.put_client(client)
    r = await cc(env, assertion(key, cid))
    assert r.status_code == 401 and "https" in r.json()["error_description"] and not fetched


async def test_jwks_cache_honours_cache_control(env: Env) -> None:
    key = ec_key()
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, json=public_jwks(key), headers={"Cache-Control": "max-age=60"})

    env.srv.jwks_cache.transport = httpx.MockTransport(handler)
    cid = await backend_client(env, key, jwks=None, jwks_uri=JWKS_URL)
    assert (await cc(env, assertion(key, cid))).status_code == 200
    assert (await cc(env, assertion(key, cid))).status_code == 200
    assert len(fetched) == 1


async def test_expired_code(env: Env) -> None:  # pitfall 10
    client, _ = await env.add_client()
    env.srv.settings.auth_code_lifetime = 1
    code, verifier = await get_code(env, client.client_id, SCOPE)
    time.sleep(2.1)
    r = await exchange(env, client.client_id, code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
