"""`fhir-server clients|users|keys` against a data directory (the same SQLite file a running
server uses)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from fhir_server.auth.server.keys import KeyRing
from fhir_server.auth.server.passwords import verify_password
from fhir_server.auth.server.store import create_auth_store
from fhir_server.cli import main
from tests.auth.server.conftest import run_cli

pytestmark = pytest.mark.usefixtures("restore_environment")


def test_clients(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    code, out = run_cli(
        capsys,
        "clients",
        "add",
        "--type",
        "public",
        "--name",
        "My app",
        "--redirect-uri",
        "https://app.example/cb",
        "--scope",
        "launch/patient patient/*.rs",
        "--scope",
        "offline_access",
        "--data-dir",
        d,
    )
    assert code == 0
    doc = json.loads(out)
    assert (
        doc["token_endpoint_auth_method"] == "none"
        and doc["scope"] == "launch/patient patient/*.rs offline_access"
    )
    code, out = run_cli(
        capsys,
        "clients",
        "add",
        "--type",
        "symmetric",
        "--client-id",
        "conf",
        "--redirect-uri",
        "https://app.example/cb",
        "--data-dir",
        d,
    )
    assert code == 0 and json.loads(out)["client_secret"]
    jwks = {"keys": [{"kty": "EC", "kid": "k", "crv": "P-384", "x": "AA", "y": "AA"}]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    code, out = run_cli(
        capsys,
        "clients",
        "add",
        "--type",
        "backend",
        "--client-id",
        "ehr",
        "--scope",
        "system/*.rs system/launch",
        "--jwks",
        f"@{tmp_path / 'jwks.json'}",
        "--data-dir",
        d,
    )
    assert code == 0 and json.loads(out)["grant_types"] == ["client_credentials"]
    code, out = run_cli(
        capsys,
        "clients",
        "add",
        "--type",
        "asymmetric",
        "--redirect-uri",
        "https://a.example/cb",
        "--jwks-uri",
        "https://a.example/jwks",
        "--data-dir",
        d,
    )
    assert code == 0 and json.loads(out)["jwks_uri"] == "https://a.example/jwks"
    assert main(["clients", "add", "--type", "backend", "--data-dir", d]) == 2  # no keys, no scope
    code, out = run_cli(capsys, "clients", "list", "--data-dir", d)
    listed = json.loads(out)
    assert {c["client_id"] for c in listed} >= {"conf", "ehr"} and len(listed) == 4
    assert all("client_secret" not in c and "client_secret_hash" not in c for c in listed)
    assert run_cli(capsys, "clients", "remove", "ehr", "--data-dir", d)[0] == 0
    assert run_cli(capsys, "clients", "remove", "ehr", "--data-dir", d)[0] == 1
    assert len(json.loads(run_cli(capsys, "clients", "list", "--data-dir", d)[1])) == 3


def test_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = str(tmp_path)
    code, out = run_cli(
        capsys,
        "users",
        "add",
        "--username",
        "nurse",
        "--password",
        "pw-1",
        "--fhir-user",
        "Practitioner/n1",
        "--data-dir",
        d,
    )
    assert code == 0 and json.loads(out)["fhirUser"] == "Practitioner/n1"
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    code, out = run_cli(
        capsys, "users", "add", "--username", "pat", "--fhir-user", "Patient/p1", "--data-dir", d
    )
    assert code == 0 and "from-stdin" not in out
    assert (
        main(
            [
                "users",
                "add",
                "--username",
                "x",
                "--password",
                "p",
                "--fhir-user",
                "Observation/1",
                "--data-dir",
                d,
            ]
        )
        == 2
    )

    async def check() -> None:
        store = create_auth_store(tmp_path)
        await store.open()
        user = await store.get_user("pat")
        assert user is not None and verify_password("from-stdin", user.password_hash)
        assert not verify_password("other", user.password_hash)
        assert "from-stdin" not in user.password_hash
        await store.close()

    asyncio.run(check())
    code, out = run_cli(capsys, "users", "list", "--data-dir", d)
    assert [u["username"] for u in json.loads(out)] == ["nurse", "pat"]
    assert "hash" not in out
    assert run_cli(capsys, "users", "remove", "nurse", "--data-dir", d)[0] == 0
    assert [
        u["username"] for u in json.loads(run_cli(capsys, "users", "list", "--data-dir", d)[1])
    ] == ["pat"]


def test_keys_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ring = KeyRing.load_or_create(tmp_path)
    first = {k["kid"] for k in ring.jwks()["keys"]}
    assert (tmp_path / "auth-keys.json").stat().st_mode & 0o777 == 0o600
    assert run_cli(capsys, "keys", "rotate", "--data-dir", str(tmp_path))[0] == 0
    ring.reload_if_changed()
    second = {k["kid"] for k in ring.jwks()["keys"]}
    assert first < second and len(second) == 4
    assert all("d" not in k for k in ring.jwks()["keys"])


def test_demo_setup(tmp_path: Path) -> None:
    from fhir_server.auth.server.admin import (
        DEMO_APP_ID,
        DEMO_PASSWORD,
        demo_instructions,
        ensure_demo,
    )

    assert asyncio.run(ensure_demo(tmp_path)) is True
    assert asyncio.run(ensure_demo(tmp_path)) is False  # once

    async def check() -> None:
        store = create_auth_store(tmp_path)
        await store.open()
        app = await store.get_client(DEMO_APP_ID)
        assert app is not None and app.is_public and app.redirect_uris
        users = {u.username: u for u in await store.list_users()}
        assert users["demo-practitioner"].fhir_user.startswith("Practitioner/")
        assert users["demo-patient"].fhir_user.startswith("Patient/")
        assert verify_password(DEMO_PASSWORD, users["demo-patient"].password_hash)
        await store.close()

    asyncio.run(check())
    text = "\n".join(demo_instructions("http://127.0.0.1:8080/fhir"))
    assert DEMO_APP_ID in text and "demo-patient" in text and "smart-configuration" in text


def test_serve_flags() -> None:
    from fhir_server.cli import _parser

    args = _parser().parse_args(["serve", "--auth", "off", "--registration-token", "t"])
    assert args.auth == "off" and args.registration_token == "t"
