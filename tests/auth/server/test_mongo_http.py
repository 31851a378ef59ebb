"""The authorization server over HTTP with its state in MongoDB (a mongodb:// storage URL): the
store-heavy tests of the other modules run again here (their SQLite runs stay where they are),
plus several server processes/hosts on one database sharing grants, revocations and keys.

Runs on a real MongoDB when FHIR_SERVER_TEST_MONGODB_URI is set, and on the mongoeco stand-in
(not a real MongoDB); see tests/storage/engines.py. The stand-in is slow: the selection is small.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.auth.server import mongo_store
from fhir_server.auth.server.admin import rotate_keys
from fhir_server.auth.server.mongo_store import MongoAuthStore, MongoKeyRing
from tests.auth.server.conftest import Env, exchange, get_code, open_env
from tests.auth.server.test_client_auth import (  # noqa: F401  (collected here again)
    test_assertion_rules,
    test_asymmetric_launch_inline_jwks,
    test_backend_services,
)
from tests.auth.server.test_endpoints import (  # noqa: F401
    test_dynamic_registration,
    test_ehr_launch,
    test_failed_logins_are_rate_limited,
    test_introspection,
)
from tests.auth.server.test_pitfalls import (  # noqa: F401
    test_launch_value_survives_the_launch_url,
    test_refresh_rotation_keeps_the_grants_lifetime,
)
from tests.auth.server.test_standalone_launch import (  # noqa: F401
    test_code_is_single_use_and_bound,
    test_patient_standalone_launch,
    test_refresh_rotation_and_reuse,
    test_revocation,
    test_revoking_the_refresh_token_ends_the_grant,
)
from tests.storage.engines import REAL_URI, STANDIN

MONGO_ENGINES = [*(["mongodb"] if REAL_URI else []), STANDIN]
pytestmark = pytest.mark.parametrize(
    "engine", MONGO_ENGINES, ids=MONGO_ENGINES, indirect=True, scope="module"
)
SCOPE = "launch/patient openid fhirUser offline_access patient/Patient.rs"


@pytest.fixture
async def env(tmp_path: Path, keys_file: Path, storage_url: str | None) -> AsyncIterator[Env]:
    assert storage_url is not None
    async with open_env(tmp_path, keys_file, storage=storage_url) as e:
        assert isinstance(e.srv.store, MongoAuthStore) and isinstance(e.srv.keys, MongoKeyRing)
        yield e


@contextlib.asynccontextmanager
async def second_host(tmp_path: Path, keys_file: Path, storage_url: str) -> AsyncIterator[Env]:
    """Another server on the same database with a data directory of its own (another host)."""
    host = tmp_path / "host-b"
    host.mkdir()
    async with open_env(host, keys_file, storage=storage_url) as e:
        yield e


async def test_grants_revocation_and_keys_are_shared_by_hosts(
    env: Env,
    tmp_path: Path,
    keys_file: Path,
    storage_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not (tmp_path / "data" / "auth.db").exists()
    client, _ = await env.add_client()
    async with second_host(tmp_path, keys_file, storage_url) as b:
        assert b.srv.keys.jwks() == env.srv.keys.jwks()  # one key document for every host
        # the client registered through host A signs in at host B, and host A redeems the code
        code, verifier = await get_code(b, client.client_id, SCOPE)
        r = await exchange(env, client.client_id, code, verifier)
        assert r.status_code == 200, r.text
        tokens = r.json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await b.http.get("/fhir/Patient/pat1", headers=bearer)).status_code == 200
        # a refresh at B, then reuse of the rotated token at A revokes the grant on both hosts
        refresh = {"grant_type": "refresh_token", "client_id": client.client_id}
        r2 = await b.http.post(
            "/auth/token", data={**refresh, "refresh_token": tokens["refresh_token"]}
        )
        assert r2.status_code == 200, r2.text
        fresh = {"Authorization": f"Bearer {r2.json()['access_token']}"}
        assert (await env.http.get("/fhir/Patient/pat1", headers=fresh)).status_code == 200
        reuse = await env.http.post(
            "/auth/token", data={**refresh, "refresh_token": tokens["refresh_token"]}
        )
        assert reuse.status_code == 400
        for host in (env, b):
            assert (await host.http.get("/fhir/Patient/pat1", headers=fresh)).status_code == 401
        # a key rotation (the CLI's) reaches both hosts: B signs with the new key, A verifies it
        new_kids = await rotate_keys(tmp_path, env.srv.store)
        monkeypatch.setattr(mongo_store, "KEYS_REFRESH_S", 0.0)
        code, verifier = await get_code(env, client.client_id, SCOPE)
        r3 = await exchange(b, client.client_id, code, verifier)
        assert r3.status_code == 200, r3.text
        from joserfc import jws

        token = r3.json()["access_token"]
        assert jws.extract_compact(token.encode()).protected["kid"] in new_kids
        ok = {"Authorization": f"Bearer {token}"}
        assert (await env.http.get("/fhir/Patient/pat1", headers=ok)).status_code == 200
        published = {k["kid"] for k in (await env.http.get("/auth/jwks")).json()["keys"]}
        assert set(new_kids) <= published
