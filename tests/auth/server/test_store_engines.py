"""The auth store and the signing keys on every storage engine (tests/storage/engines.py): SQLite
(`<data-dir>/auth.db`, `auth-keys.json`) and MongoDB (`auth_*` collections of the FHIR database)
chosen by the storage URL. Two stores on one database stand in for two server processes/hosts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.auth.server.admin import rotate_keys
from fhir_server.auth.server.keys import KeyRing, KeyRingBase
from fhir_server.auth.server.models import Client, User
from fhir_server.auth.server.mongo_store import MongoAuthStore, MongoKeyRing
from fhir_server.auth.server.store import (
    AuthStore,
    SqliteAuthStore,
    create_auth_store,
    open_key_ring,
)

pytestmark = pytest.mark.all_engines


@pytest.fixture
async def store(tmp_path: Path, storage_url: str | None) -> AsyncIterator[AuthStore]:
    s = create_auth_store(tmp_path, storage_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def other(tmp_path: Path, storage_url: str | None) -> AsyncIterator[AuthStore]:
    """A second store on the same database: another worker, host or the CLI."""
    s = create_auth_store(tmp_path, storage_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_the_storage_url_chooses_the_store(
    store: AuthStore, tmp_path: Path, storage_url: str | None
) -> None:
    if storage_url is None:
        assert isinstance(store, SqliteAuthStore) and (tmp_path / "auth.db").exists()
    else:
        assert isinstance(store, MongoAuthStore) and not (tmp_path / "auth.db").exists()
        names = set(await store.db.list_collection_names())
        assert {"auth_items", "auth_refresh", "auth_access", "auth_jtis"} <= names


async def test_clients_and_users(store: AuthStore, other: AuthStore) -> None:
    await store.put_client(Client("b-app", "B", redirect_uris=["https://b/cb"], created_at=1))
    await store.put_client(Client("a-app", "A", scope="patient/*.rs"))
    await store.put_client(Client("a-app", "A2", scope="patient/*.rs"))  # replaces
    got = await other.get_client("a-app")
    assert got is not None and got.client_name == "A2" and got.allowed_scopes() == ["patient/*.rs"]
    assert [c.client_id for c in await other.list_clients()] == ["a-app", "b-app"]
    assert await store.delete_client("b-app") and not await store.delete_client("b-app")
    assert await other.get_client("b-app") is None
    await store.put_user(User("nurse", "hash", "Practitioner/n1", 5))
    await store.put_user(User("amy", "hash", "Patient/p1", 6))
    user = await other.get_user("nurse")
    assert user is not None and user.fhir_user == "Practitioner/n1"
    assert [u.username for u in await other.list_users()] == ["amy", "nurse"]
    assert await other.delete_user("amy") and await store.get_user("amy") is None


async def test_items_are_single_use_across_processes(store: AuthStore, other: AuthStore) -> None:
    exp = int(time.time()) + 60
    await store.put_item("code", "c1", {"client_id": "x"}, exp)
    assert await other.get_item("code", "c1") == {"client_id": "x"}
    takers = [s.take_item("code", "c1") for s in (store, other, store, other)]
    taken = await asyncio.gather(*takers)
    assert [t for t in taken if t is not None] == [{"client_id": "x"}]
    await store.put_item("launch", "old", {"patient": "p"}, int(time.time()) - 1)
    assert await other.get_item("launch", "old") is None
    assert await other.take_item("launch", "old") is None
    await store.put_item("txn", "t", {"a": 1}, exp)
    await other.delete_item("txn", "t")
    assert await store.get_item("txn", "t") is None


async def test_refresh_rotation_and_family_revocation(store: AuthStore, other: AuthStore) -> None:
    exp = int(time.time()) + 3600
    await store.create_family("fam", "app", exp)
    await store.put_refresh("r1", "fam", {"scope": "openid"}, exp)
    await store.put_access("at1", "fam", "app", int(time.time()) + 60)
    record = await other.get_refresh("r1")
    assert record is not None and record.family == "fam" and not record.rotated
    assert record.data == {"scope": "openid"}
    results = await asyncio.gather(store.mark_rotated("r1"), other.mark_rotated("r1"))
    assert sorted(results) == [False, True]  # exactly one rotation wins
    rotated = await store.get_refresh("r1")
    assert rotated is not None and rotated.rotated
    assert await other.access_active("at1")
    await other.revoke_family("fam")  # reuse detected on another worker
    assert await store.get_refresh("r1") is None
    assert not await store.access_active("at1")
    # a token written after the bulk revocation is refused through its family
    await store.put_access("at2", "fam", "app", int(time.time()) + 60)
    assert not await other.access_active("at2")


async def test_access_token_revocation_is_immediate(store: AuthStore, other: AuthStore) -> None:
    soon = int(time.time()) + 60
    await store.put_access("j1", None, "backend", soon)
    await store.create_family("f2", "app", soon)
    await store.put_access("j2", "f2", "app", soon)
    await store.put_access("j3", None, "backend", int(time.time()) - 1)
    assert await other.access_active("j1") and await other.access_active("j2")
    assert not await other.access_active("j3") and not await other.access_active("nope")
    assert await store.revoke_access("j1") is None
    assert await store.revoke_access("j2") == "f2"
    assert await store.revoke_access("unknown") is None
    assert not await other.access_active("j1") and not await other.access_active("j2")


async def test_assertion_jti_replay(store: AuthStore, other: AuthStore) -> None:
    exp = int(time.time()) + 240
    first = await asyncio.gather(
        store.remember_jti("app", "j", exp), other.remember_jti("app", "j", exp)
    )
    assert sorted(first) == [False, True]
    assert await store.remember_jti("other-app", "j", exp)  # per issuer
    await store.remember_jti("app", "old", int(time.time()) - 1)
    assert await other.remember_jti("app", "old", exp)  # an expired entry is no replay


async def test_failed_logins_and_purge(store: AuthStore, other: AuthStore) -> None:
    since = int(time.time()) - 10
    for _ in range(3):
        await store.add_failure("user:amy")
    await other.add_failure("addr:127.0.0.1")
    assert await other.count_failures("user:amy", since) == 3
    assert await store.count_failures("user:amy", int(time.time()) + 10) == 0
    past = int(time.time()) - 5
    await store.put_item("code", "gone", {}, past)
    await store.create_family("old", "app", past)
    await store.put_refresh("old-r", "old", {}, past)
    await store.put_item("code", "kept", {}, past + 600)
    await other.purge()
    assert await store.take_item("code", "gone") is None
    assert await store.get_refresh("old-r") is None
    assert await store.get_item("code", "kept") == {}
    assert await store.count_failures("user:amy", since) == 3


async def test_signing_keys_are_created_once_and_rotation_reaches_every_process(
    store: AuthStore, other: AuthStore, tmp_path: Path, storage_url: str | None
) -> None:
    rings = await asyncio.gather(open_key_ring(tmp_path, store), open_key_ring(tmp_path, other))
    a, b = rings
    kids = {k["kid"] for k in a.jwks()["keys"]}
    assert len(kids) == 2 and kids == {k["kid"] for k in b.jwks()["keys"]}
    assert all("d" not in k for k in a.jwks()["keys"])
    if storage_url is None:
        assert isinstance(a, KeyRing) and (tmp_path / "auth-keys.json").exists()
    else:
        assert isinstance(a, MongoKeyRing) and not (tmp_path / "auth-keys.json").exists()
    new_kids = await rotate_keys(tmp_path, store)  # as `fhir-server keys rotate` does
    assert a.key(new_kids[0]) is not None or isinstance(a, MongoKeyRing)
    await b.refresh(force=True)
    assert {str(b.signing_key("RS256").kid), str(b.signing_key("ES384").kid)} == set(new_kids)
    assert kids < {k["kid"] for k in b.jwks()["keys"]}  # old keys still verify


async def test_a_throttled_refresh_still_finds_a_new_kid(
    store: AuthStore, other: AuthStore, tmp_path: Path
) -> None:
    a: KeyRingBase = await open_key_ring(tmp_path, store)
    b: KeyRingBase = await open_key_ring(tmp_path, other)
    await b.refresh()
    new_kid = (await rotate_keys(tmp_path, store))[0]
    # the server's verification path: an unknown kid forces a re-read
    if b.key(new_kid) is None:
        await b.refresh(force=True)
    assert b.key(new_kid) is not None
    await a.refresh(force=True)
    assert a.signing_key("RS256").kid == new_kid


async def test_removing_a_client_revokes_its_tokens(store: AuthStore, other: AuthStore) -> None:
    """`fhir-server clients remove X` (another process): X's live access tokens, of a refresh
    family or not, stop working; another client's do not."""
    exp = int(time.time()) + 600
    await store.put_client(Client("gone"))
    await store.put_client(Client("kept"))
    await store.create_family("fam-gone", "gone", exp)
    await store.put_access("jti-gone-1", "fam-gone", "gone", exp)
    await store.put_access("jti-gone-2", None, "gone", exp)
    await store.put_access("jti-kept", None, "kept", exp)
    assert await other.delete_client("gone")
    assert not await store.access_active("jti-gone-1")
    assert not await store.access_active("jti-gone-2")
    assert await store.access_active("jti-kept")
