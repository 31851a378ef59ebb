"""The documented external-issuer mode: access tokens of another authorization server, verified
against its JWKS URL or by RFC 7662 introspection, mapped to the same AccessGrant."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt

from fhir_server.errors import Unauthorized
from tests.auth.server.conftest import BASE, open_env, public_jwks, rsa_key

IDP = "https://idp.example"


def _token(key: Any, **claims: Any) -> str:
    base = {
        "iss": IDP,
        "aud": BASE,
        "exp": int(time.time()) + 300,
        "azp": "ext-app",
        "sub": "u1",
        "scope": "patient/*.rs launch/patient",
        "patient": "pat1",
        "jti": "e1",
    }
    base.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, base, key)


async def test_external_jwks(tmp_path: Path, keys_file: Path) -> None:
    key = rsa_key("idp-1")
    async with open_env(
        tmp_path, keys_file, external_issuer=IDP, external_jwks_url=f"{IDP}/jwks"
    ) as env:
        env.srv.jwks_cache.transport = httpx.MockTransport(
            lambda r: httpx.Response(200, json=public_jwks(key))
        )
        grant = await env.services.authenticate(f"Bearer {_token(key)}")  # type: ignore[misc]
        assert grant.client_id == "ext-app" and grant.patient == "pat1" and grant.issuer == IDP
        assert grant.scopes == ("patient/*.rs", "launch/patient")
        grant = await env.services.authenticate(
            f"Bearer {_token(key, scope=None, scp=['user/*.rs'])}"
        )  # type: ignore[misc]
        assert grant.scopes == ("user/*.rs",)
        for bad in (
            _token(key, aud="https://other/fhir"),
            _token(key, exp=int(time.time()) - 5),
            _token(rsa_key("idp-1")),
        ):
            with pytest.raises(Unauthorized):
                await env.services.authenticate(f"Bearer {bad}")  # type: ignore[misc]
        # the server's own tokens still work alongside
        from tests.auth.server.test_endpoints import _launch_token

        own = await _launch_token(env)
        assert (await env.services.authenticate(f"Bearer {own}")).issuer == env.srv.urls.issuer  # type: ignore[misc]


async def test_external_introspection(tmp_path: Path, keys_file: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        token = dict(httpx.QueryParams(request.content.decode()))["token"]
        if token == "good-opaque":
            return httpx.Response(
                200,
                json={
                    "active": True,
                    "scope": "system/*.rs",
                    "client_id": "sync",
                    "exp": int(time.time()) + 60,
                    "aud": BASE,
                    "iss": IDP,
                },
            )
        return httpx.Response(200, json={"active": False})

    async with open_env(
        tmp_path,
        keys_file,
        external_issuer=IDP,
        external_introspection_url=f"{IDP}/introspect",
        external_client_id="rs",
        external_client_secret="s3cret",
    ) as env:
        env.srv.jwks_cache.transport = httpx.MockTransport(handler)
        grant = await env.services.authenticate("Bearer good-opaque")  # type: ignore[misc]
        assert grant.client_id == "sync" and grant.scopes == ("system/*.rs",)
        assert seen[0].headers["authorization"].startswith("Basic ")
        with pytest.raises(Unauthorized):
            await env.services.authenticate("Bearer revoked-opaque")  # type: ignore[misc]
