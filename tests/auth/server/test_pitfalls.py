"""SMART.md items the other auth tests did not pin down yet (see tests/auth/README.md for the
whole item -> test table): section 4 pitfalls 4 (refresh lifetime kept by rotation), 5 (clock
leeway, but not on the 5-minute cap), 7 (kid + kty fitting alg), 8 (JWKS URL: not JSON, too
large, timeout, redirect), 12 (launch value in the launch URL), §2 item 5 (CORS on the fhirUser
resource and the token endpoint), and §2 items 6/31 as far as the server decides (https URLs in
discovery behind a TLS-terminating proxy)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jws
from joserfc.errors import JoseError

from fhir_server.auth.server.core import JWKS_MAX_BYTES, digest
from tests.auth.server.conftest import (
    TOKEN_URL,
    Env,
    assertion,
    ec_key,
    exchange,
    get_code,
    open_env,
    public_jwks,
    rsa_key,
)
from tests.auth.server.test_client_auth import JWKS_URL, backend_client, cc

SCOPE = "launch/patient openid fhirUser offline_access patient/Patient.rs"
APP = "https://app.example"


async def test_clock_leeway_applies_to_expiry_not_to_the_lifetime_cap(env: Env) -> None:
    """Pitfall 5: a small skew is tolerated (an assertion that expired 20 s ago by our clock is
    still accepted, 60 s leeway), but the SMART cap `exp` <= now + 300 s gets no leeway."""
    key = rsa_key()
    cid = await backend_client(env, key)
    assert (await cc(env, assertion(key, cid, lifetime=-20))).status_code == 200
    for lifetime in (330, 359):  # within cap + leeway: still refused
        r = await cc(env, assertion(key, cid, lifetime=lifetime))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", lifetime
    now = int(time.time())
    assert (await cc(env, assertion(key, cid, iat=now + 20))).status_code == 200  # skewed iat


async def test_key_must_fit_the_algorithm(env: Env) -> None:
    """Pitfall 7: the key is chosen by kid *and* a kty fitting alg; an EC key registered under
    the kid an RS384 assertion names does not verify it, nor does a kid with two keys."""
    rsa, ec = rsa_key("same"), ec_key("same")
    cid = await backend_client(env, rsa, jwks=public_jwks(ec))
    r = await cc(env, assertion(rsa, cid))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    both = await backend_client(env, rsa, jwks=public_jwks(ec, rsa))
    assert (await cc(env, assertion(rsa, both))).status_code == 200  # one RSA key "same"
    assert (await cc(env, assertion(ec, both))).status_code == 200  # one EC key "same"
    twice = await backend_client(env, rsa, jwks=public_jwks(rsa, rsa))
    assert (await cc(env, assertion(rsa, twice))).status_code == 401


@pytest.mark.parametrize("case", ["not json", "too large", "timeout", "redirect", "no keys"])
async def test_jwks_url_failures_are_invalid_client(env: Env, case: str) -> None:
    """Pitfall 8 / smart-launcher tests: a JWKS URL that fails, is not JSON, is too large, hangs
    or redirects elsewhere yields `invalid_client`, never a 500; the redirect is not followed."""
    key = ec_key()
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        if case == "not json":
            return httpx.Response(200, text="<html>keys</html>")
        if case == "too large":
            keys = public_jwks(key)["keys"] * (JWKS_MAX_BYTES // 200 + 1)
            return httpx.Response(200, json={"keys": keys})
        if case == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if case == "redirect":
            return httpx.Response(302, headers={"Location": "https://evil.example/jwks"})
        return httpx.Response(200, json={"keys": []})

    env.srv.jwks_cache.transport = httpx.MockTransport(handler)
    cid = await backend_client(env, key, jwks=None, jwks_uri=JWKS_URL)
    r = await cc(env, assertion(key, cid))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert fetched == [JWKS_URL]


async def test_refresh_rotation_keeps_the_grants_lifetime(env: Env) -> None:
    """Pitfall 4 and the g10 attestation "refresh tokens valid >= 3 months": an offline grant
    lasts at least 90 days by default, and a rotated refresh token carries the same absolute
    expiry (rotation neither shortens nor extends the grant)."""
    assert env.srv.settings.refresh_token_lifetime >= 90 * 86400
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    first = (await exchange(env, client.client_id, code, verifier)).json()
    record = await env.srv.store.get_refresh(digest(first["refresh_token"]))
    assert record is not None
    assert record.expires_at >= int(time.time()) + 90 * 86400 - 60
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": client.client_id,
            "refresh_token": first["refresh_token"],
        },
    )
    assert r.status_code == 200, r.text
    rotated = await env.srv.store.get_refresh(digest(r.json()["refresh_token"]))
    assert rotated is not None and rotated.expires_at == record.expires_at


async def test_launch_value_survives_the_launch_url(env: Env) -> None:
    """Pitfall 12: the launch handle is URL-safe (no `+`, `/`, `=` to be mangled by
    form-decoding, onc-certification-g10-test-kit#703) and the launch URL carries it encoded so
    that parsing the URL gives back exactly the handle."""
    from tests.auth.server.test_endpoints import _launch_token

    app, _ = await env.add_client(launch_uri="https://app.example/launch?x=1")
    system = await _launch_token(env)
    handles = set()
    for _ in range(5):
        r = await env.http.post(
            "/auth/launch",
            json={"client_id": app.client_id, "patient": "pat1"},
            headers={"Authorization": f"Bearer {system}"},
        )
        assert r.status_code == 201, r.text
        doc = r.json()
        launch = doc["launch"]
        assert all(c.isalnum() or c in "-_" for c in launch) and len(launch) >= 32
        query = parse_qs(urlsplit(doc["launch_url"]).query)
        assert query == {"x": ["1"], "iss": [doc["iss"]], "launch": [launch]}
        handles.add(launch)
    assert len(handles) == 5


async def test_cors_on_token_endpoint_and_fhir_user_resource(env: Env) -> None:
    """§2 item 5: the token endpoint (public clients) and the fhirUser resource read with the
    token both answer `Access-Control-Allow-Origin` (here `*`) to a browser origin."""
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    r = await exchange(env, client.client_id, code, verifier, headers={"Origin": APP})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] in ("*", APP)
    body = r.json()
    h = {"Origin": APP, "Authorization": f"Bearer {body['access_token']}"}
    user = await env.http.get("/fhir/Patient/pat1", headers=h)
    assert user.status_code == 200 and user.headers["access-control-allow-origin"] in ("*", APP)
    pre = await env.http.options(
        "/fhir/Patient/pat1",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"


async def test_https_public_url_gives_https_endpoints(tmp_path: Any, keys_file: Any) -> None:
    """§2 items 6 and 31 (TLS) as far as the server decides: TLS is terminated in front of it
    (reverse proxy; attestation), and with an https public URL every advertised endpoint is
    https and `aud` must be the https base."""
    origin = "https://fhir.example.org"
    async with open_env(tmp_path, keys_file, public_url=origin) as e:
        doc = (await e.http.get("/fhir/.well-known/smart-configuration")).json()
        urls = [v for k, v in doc.items() if k.endswith("_endpoint") or k == "jwks_uri"]
        assert urls and all(u.startswith(origin + "/") for u in urls), urls
        assert doc["token_endpoint"] == f"{origin}/auth/token"


@pytest.mark.parametrize(
    "missing", ["iss", "sub", "aud", "exp", "jti", "header kid", "header alg", "header typ"]
)
async def test_assertion_without_a_required_member_is_refused(env: Env, missing: str) -> None:
    """§2 "Additional expected behaviours" (smart-launcher-v2 token tests) and SMART.md 1.5:
    an assertion lacking iss, sub, aud, exp or jti, or a header without kid, alg or typ, is
    `invalid_client` (an unsigned or unknown-alg token cannot even be decoded)."""
    key = rsa_key()
    cid = await backend_client(env, key)
    header: dict[str, Any] = {"alg": "RS384", "kid": key.kid, "typ": "JWT"}
    claims: dict[str, Any] = {
        "iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": int(time.time()) + 120,
        "jti": secrets.token_hex(8),
    }  # fmt: skip
    if missing.startswith("header "):
        del header[missing.removeprefix("header ")]
    else:
        del claims[missing]
    payload = json.dumps(claims).encode()
    try:  # jws, not jwt: jwt.encode would add the missing typ back
        signed = jws.serialize_compact(header, payload, key, algorithms=["RS384"])
    except JoseError:  # joserfc will not sign without alg: send it unsigned-looking instead
        signed = _segments(header, claims) + ".c2ln"
    r = await cc(env, signed)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def b64(doc: dict[str, Any]) -> str:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}"
