"""The authorization server over real HTTP (httpx against the ASGI app), auth on, a real SQLite
FHIR store and auth store in a temp dir. Helpers drive the login and consent forms."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import re
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhir_server.app import create_app
from fhir_server.auth.server.clients import new_client
from fhir_server.auth.server.core import AuthServer
from fhir_server.auth.server.keys import KeyRing, keys_path
from fhir_server.auth.server.models import Client, User
from fhir_server.auth.server.passwords import hash_password
from fhir_server.cli import main as cli_main
from fhir_server.interactions.context import Services
from fhir_server.seed import direct_sender
from tests.api.conftest import make_settings

ORIGIN = "http://testserver"
BASE = f"{ORIGIN}/fhir"
TOKEN_URL = f"{ORIGIN}/auth/token"
REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery staple"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Env:
    http: httpx.AsyncClient
    srv: AuthServer
    services: Services

    async def add_client(self, **meta: Any) -> tuple[Client, str | None]:
        meta.setdefault("redirect_uris", [REDIRECT])
        meta.setdefault("token_endpoint_auth_method", "none")
        meta.setdefault("grant_types", ["authorization_code", "refresh_token"])
        client, secret = new_client(meta)
        await self.srv.store.put_client(client)
        return client, secret

    async def add_user(self, username: str, fhir_user: str) -> None:
        user = User(username, _password_hash(), fhir_user, int(time.time()))
        await self.srv.store.put_user(user)

    async def put(self, resource: dict[str, Any]) -> None:
        send = direct_sender(self.services)
        status, _ = await send("PUT", f"{resource['resourceType']}/{resource['id']}", resource)
        assert status in (200, 201), status


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Signing keys generated once per session (RSA generation is slow); copied per test."""
    folder = tmp_path_factory.mktemp("keys")
    KeyRing.load_or_create(folder)
    return keys_path(folder)


@contextlib.asynccontextmanager
async def open_env(tmp_path: Path, keys_file: Path, **overrides: Any) -> AsyncIterator[Env]:
    (tmp_path / "data").mkdir()
    shutil.copy(keys_file, keys_path(tmp_path / "data"))
    values: dict[str, Any] = {
        "auth": "on",
        "public_url": ORIGIN,
        "registration_token": "reg-secret-token",
    }
    values.update(overrides)
    app = create_app(make_settings(tmp_path, **values))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            e = Env(http, app.state.auth_server, app.state.services)
            await e.put(
                {
                    "resourceType": "Patient",
                    "id": "pat1",
                    "name": [{"family": "Doe", "given": ["Jane"]}],
                }
            )
            await e.put({"resourceType": "Patient", "id": "pat2", "name": [{"family": "Roe"}]})
            await e.put({"resourceType": "Practitioner", "id": "doc1"})
            await e.put(
                {
                    "resourceType": "Encounter",
                    "id": "enc1",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": "Patient/pat1"},
                }
            )
            await e.add_user("alice", "Patient/pat1")
            await e.add_user("drbob", "Practitioner/doc1")
            yield e


@pytest.fixture
async def env(tmp_path: Path, keys_file: Path) -> AsyncIterator[Env]:
    async with open_env(tmp_path, keys_file) as e:
        yield e


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def auth_params(client_id: str, scope: str, challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": str(uuid.uuid4()),
        "aud": BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return params


def hidden_fields(html: str) -> dict[str, str]:
    out = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html):
        out[name] = unescape(value)
    return out


def checkbox_scopes(html: str, checked_only: bool = True) -> list[str]:
    pattern = r'<input type="checkbox" name="scope" value="([^"]*)"( checked)?>'
    return [unescape(v) for v, c in re.findall(pattern, html) if c or not checked_only]


def redirect_query(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 302, (resp.status_code, resp.text[:500])
    loc = resp.headers["location"]
    assert loc.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}


async def login(
    http: httpx.AsyncClient, params: dict[str, str], username: str, *, post: bool = False
) -> httpx.Response:
    if post:
        page = await http.post("/auth/authorize", data=params)
    else:
        page = await http.get("/auth/authorize", params=params)
    assert page.status_code == 200, page.text[:500]
    form = {**hidden_fields(page.text), "username": username, "password": PASSWORD}
    return await http.post("/auth/authorize", data=form)


async def consent(
    http: httpx.AsyncClient,
    consent_page: httpx.Response,
    scopes: list[str] | None = None,
    decision: str = "allow",
    **extra: str,
) -> httpx.Response:
    assert consent_page.status_code in (200, 400), consent_page.text[:500]
    assert 'name="decision"' in consent_page.text
    chosen = checkbox_scopes(consent_page.text) if scopes is None else scopes
    form: list[tuple[str, str]] = [
        *hidden_fields(consent_page.text).items(),
        ("decision", decision),
    ]
    form += [("scope", s) for s in chosen]
    form += list(extra.items())
    return await post_form(http, "/auth/authorize", form)


async def post_form(
    http: httpx.AsyncClient, url: str, form: list[tuple[str, str]]
) -> httpx.Response:
    """A form with repeated fields (httpx's data= takes a mapping)."""
    return await http.post(
        url,
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


async def get_code(
    env: Env,
    client_id: str,
    scope: str,
    username: str = "alice",
    *,
    post: bool = False,
    scopes: list[str] | None = None,
    **extra: str,
) -> tuple[str, str]:
    """Run the authorize step; returns (code, code_verifier)."""
    patient = {"patient": extra.pop("patient")} if "patient" in extra else {}
    verifier, challenge = pkce()
    params = auth_params(client_id, scope, challenge, **extra)
    page = await login(env.http, params, username, post=post)
    resp = await consent(env.http, page, scopes, **patient)
    q = redirect_query(resp)
    assert q["state"] == params["state"]
    return q["code"], verifier


async def exchange(env: Env, client_id: str, code: str, verifier: str, **kw: Any) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    data.update(kw.pop("data", {}))
    return await env.http.post(
        "/auth/token", data={k: v for k, v in data.items() if v is not None}, **kw
    )


def rsa_key(kid: str = "rs1") -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)  # type: ignore[arg-type]


def ec_key(kid: str = "ec1") -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": kid}, private=True)  # type: ignore[arg-type]


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [dict(k.as_dict(private=False)) for k in keys]}


def assertion(
    key: RSAKey | ECKey,
    client_id: str,
    *,
    alg: str | None = None,
    lifetime: int = 240,
    aud: str = TOKEN_URL,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    alg = alg or ("RS384" if isinstance(key, RSAKey) else "ES384")
    h = {"alg": alg, "kid": key.kid, "typ": "JWT", **(header or {})}
    now = int(time.time())
    c = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + lifetime,
        "jti": secrets.token_hex(12),
        **claims,
    }
    return jwt.encode(h, c, key, algorithms=[alg])


@pytest.fixture
def restore_environment() -> Iterator[None]:
    """The CLI passes options on as FHIR_SERVER_* variables; keep them out of other tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`fhir-server ARGV...` in this process: its exit code and standard output."""
    code = cli_main(list(argv))
    return code, capsys.readouterr().out
