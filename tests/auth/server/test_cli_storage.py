"""`fhir-server clients|users|keys` honour --storage and FHIR_SERVER_STORAGE: with a mongodb://
URL they manage the database's `auth_*` collections (what every server host reads), not the data
directory. On every storage engine (tests/storage/engines.py)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from fhir_server.auth.server.keys import KeyRingBase
from fhir_server.auth.server.passwords import verify_password
from fhir_server.auth.server.store import create_auth_store, open_key_ring
from tests.auth.server.conftest import run_cli

pytestmark = [pytest.mark.all_engines, pytest.mark.usefixtures("restore_environment")]


def _kids(data_dir: Path, storage_url: str | None) -> set[str]:
    async def read() -> set[str]:
        store = create_auth_store(data_dir, storage_url)
        await store.open()
        try:
            ring: KeyRingBase = await open_key_ring(data_dir, store)
            return {str(k["kid"]) for k in ring.jwks()["keys"]}
        finally:
            await store.close()

    return asyncio.run(read())


def test_clients_users_and_keys_follow_the_storage_url(
    tmp_path: Path, storage_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_dir, server_dir = tmp_path / "cli", tmp_path / "server"
    where = ["--data-dir", str(cli_dir), *(["--storage", storage_url] if storage_url else [])]
    code, out = run_cli(
        capsys, "clients", "add", "--client-id", "app1", "--redirect-uri", "https://a/cb", *where
    )
    assert code == 0 and json.loads(out)["client_id"] == "app1"
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
        *where,
    )
    assert code == 0
    before = _kids(cli_dir, storage_url)
    assert run_cli(capsys, "keys", "rotate", *where)[0] == 0

    async def server_view(data_dir: Path) -> tuple[list[str], bool]:
        store = create_auth_store(data_dir, storage_url)
        await store.open()
        try:
            user = await store.get_user("nurse")
            ok = user is not None and verify_password("pw-1", user.password_hash)
            return [c.client_id for c in await store.list_clients()], ok
        finally:
            await store.close()

    if storage_url is None:  # SQLite: the data directory is the store
        assert (cli_dir / "auth.db").exists() and (cli_dir / "auth-keys.json").exists()
        assert asyncio.run(server_view(cli_dir)) == (["app1"], True)
    else:  # MongoDB: another host, with a data directory of its own, sees it all
        assert not (cli_dir / "auth.db").exists() and not (cli_dir / "auth-keys.json").exists()
        assert asyncio.run(server_view(server_dir)) == (["app1"], True)
        assert before < _kids(server_dir, storage_url)
    after = _kids(cli_dir, storage_url)
    assert before < after and len(after) == 4
    # the environment variable works as the option does
    env_where = ["--data-dir", str(cli_dir)]
    if storage_url:
        os.environ["FHIR_SERVER_STORAGE"] = storage_url
    code, out = run_cli(capsys, "clients", "list", *env_where)
    assert code == 0 and [c["client_id"] for c in json.loads(out)] == ["app1"]
    assert run_cli(capsys, "users", "remove", "nurse", *env_where)[0] == 0
    code, out = run_cli(capsys, "users", "list", *env_where)
    assert json.loads(out) == []


async def test_demo_setup_goes_to_the_storage(tmp_path: Path, storage_url: str | None) -> None:
    from fhir_server.auth.server.admin import DEMO_APP_ID, ensure_demo

    assert await ensure_demo(tmp_path / "a", storage_url) is True
    # another host (its own data directory) finds the demo set-up in a shared database
    again = await ensure_demo(tmp_path / ("a" if storage_url is None else "b"), storage_url)
    assert again is False
    store = create_auth_store(tmp_path / "a", storage_url)
    await store.open()
    try:
        assert await store.get_client(DEMO_APP_ID) is not None
        assert {u.username for u in await store.list_users()} == {
            "demo-practitioner",
            "demo-patient",
        }
    finally:
        await store.close()
