"""The authorization server's state on MongoDB, for servers whose FHIR storage is MongoDB.

Every server process on every host shares it: a revocation, a used code or refresh token, a seen
client-assertion `jti`, a failed login and a key rotation take effect for all of them at once.
The collections live in the FHIR database (the storage URL's path), prefixed `auth_`:

- `auth_clients` `{_id: client_id, doc}`, `auth_users` `{_id: username, doc}`;
- `auth_items` `{_id: "kind:key", kind, doc, expires_at, exp}`: pending authorizations, codes,
  launch contexts; `take_item` is one `findOneAndDelete`, so of two takers only one wins;
- `auth_families` `{_id: family, client_id, revoked, expires_at, exp}`;
- `auth_refresh` `{_id: token_hash, family, doc, rotated, expires_at, exp}` (index on `family`);
  `mark_rotated` is a conditional update on `rotated: false`;
- `auth_access` `{_id: jti, family, client_id, revoked, expires_at, exp}` (index on `family`);
- `auth_jtis` `{_id: {i: issuer, j: jti}, expires_at, exp}`: the unique `_id` rejects a replay;
- `auth_failures` `{key, at, exp}` (index on `(key, at)`);
- `auth_keys` `{_id: "signing", doc, rev}`: the signing keys (see `MongoKeyRing`).

`doc` fields hold JSON bytes. `expires_at` (epoch seconds) is what queries check; `exp` (a date)
carries a TTL index so MongoDB deletes expired entries by itself (access tokens a day after they
expire, failed logins after a day). Indexes are created at `open()`, idempotently, by every process.
Secrets never reach the store in clear: callers pass SHA-256 digests of codes, tokens and handles.
Private signing keys are stored in clear, like `<data-dir>/auth-keys.json` on SQLite: restrict
access to the database (and its backups) accordingly.
"""

from __future__ import annotations

import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import orjson
from bson.binary import Binary
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.auth.server.keys import (
    KeyRingBase,
    current_kids,
    new_key_document,
    rotated_document,
)
from fhir_server.auth.server.models import Client, User
from fhir_server.auth.server.store import RefreshRecord
from fhir_server.storage.mongo.engine import database_name

Doc = dict[str, Any]
DAY = 86400
KEYS_ID = "signing"
KEYS_REFRESH_S = 5.0  # how stale a worker's cached key document may get (forced on unknown kid)


def _now() -> int:
    return int(time.time())


def _date(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _bytes(data: Any) -> Binary:
    return Binary(orjson.dumps(data))


def _loads(value: Any) -> Any:
    return orjson.loads(bytes(value))


def _ttl(field: str = "exp") -> IndexModel:
    return IndexModel([(field, ASCENDING)], expireAfterSeconds=0, name=f"{field}_ttl")


INDEXES: dict[str, list[IndexModel]] = {
    "auth_items": [_ttl()],
    "auth_families": [_ttl()],
    "auth_refresh": [IndexModel([("family", ASCENDING)], name="family"), _ttl()],
    "auth_access": [IndexModel([("family", ASCENDING)], name="family"), _ttl()],
    "auth_jtis": [_ttl()],
    "auth_failures": [
        IndexModel([("key", ASCENDING), ("at", ASCENDING)], name="key_at"),
        _ttl(),
    ],
}


class MongoAuthStore:
    """The `AuthStore` Protocol on MongoDB (its own client on the storage URL)."""

    def __init__(self, uri: str, *, client_options: dict[str, Any] | None = None) -> None:
        self.uri = uri
        self.db_name = database_name(uri)
        self._options = client_options or {}
        self._client: AsyncMongoClient[Doc] | None = None

    @property
    def db(self) -> AsyncDatabase[Doc]:
        assert self._client is not None, "auth store is not open"
        return self._client[self.db_name]

    def _c(self, name: str) -> AsyncCollection[Doc]:
        return self.db[f"auth_{name}"]

    async def open(self) -> None:
        if self._client is None:
            self._client = AsyncMongoClient(self.uri, tz_aware=True, **self._options)
        for name, indexes in INDEXES.items():
            await self.db[name].create_indexes(indexes)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # clients and users ---------------------------------------------------------------------------

    async def put_client(self, client: Client) -> None:
        await self._c("clients").replace_one(
            {"_id": client.client_id}, {"doc": _bytes(client.to_json())}, upsert=True
        )

    async def get_client(self, client_id: str) -> Client | None:
        d = await self._c("clients").find_one({"_id": client_id})
        return Client.from_json(_loads(d["doc"])) if d else None

    async def list_clients(self) -> list[Client]:
        cursor = self._c("clients").find({}, sort=[("_id", ASCENDING)])
        return [Client.from_json(_loads(d["doc"])) async for d in cursor]

    async def delete_client(self, client_id: str) -> bool:
        """Removes the client and revokes its grants: its live access tokens stop working."""
        n = (await self._c("clients").delete_one({"_id": client_id})).deleted_count
        await self._c("families").update_many({"client_id": client_id}, {"$set": {"revoked": True}})
        await self._c("access").update_many({"client_id": client_id}, {"$set": {"revoked": True}})
        return n > 0

    async def put_user(self, user: User) -> None:
        await self._c("users").replace_one(
            {"_id": user.username}, {"doc": _bytes(user.to_json())}, upsert=True
        )

    async def get_user(self, username: str) -> User | None:
        d = await self._c("users").find_one({"_id": username})
        return User.from_json(_loads(d["doc"])) if d else None

    async def list_users(self) -> list[User]:
        cursor = self._c("users").find({}, sort=[("_id", ASCENDING)])
        return [User.from_json(_loads(d["doc"])) async for d in cursor]

    async def delete_user(self, username: str) -> bool:
        return (await self._c("users").delete_one({"_id": username})).deleted_count > 0

    # short-lived items -----------------------------------------------------------------------------

    async def put_item(self, kind: str, key: str, data: dict[str, Any], expires_at: int) -> None:
        body = {"kind": kind, "doc": _bytes(data), "expires_at": expires_at}
        await self._c("items").replace_one(
            {"_id": f"{kind}:{key}"}, {**body, "exp": _date(expires_at)}, upsert=True
        )

    async def get_item(self, kind: str, key: str) -> dict[str, Any] | None:
        d = await self._c("items").find_one({"_id": f"{kind}:{key}", "expires_at": {"$gt": _now()}})
        return dict(_loads(d["doc"])) if d else None

    async def take_item(self, kind: str, key: str) -> dict[str, Any] | None:
        d = await self._c("items").find_one_and_delete({"_id": f"{kind}:{key}"})
        if d is None or d["expires_at"] <= _now():
            return None
        return dict(_loads(d["doc"]))

    async def delete_item(self, kind: str, key: str) -> None:
        await self._c("items").delete_one({"_id": f"{kind}:{key}"})

    # grants --------------------------------------------------------------------------------------

    async def create_family(self, family: str, client_id: str, expires_at: int) -> None:
        await self._c("families").insert_one(
            {
                "_id": family,
                "client_id": client_id,
                "revoked": False,
                "expires_at": expires_at,
                "exp": _date(expires_at),
            }
        )

    async def revoke_family(self, family: str) -> None:
        # The family first: access and refresh checks consult it, so a token written concurrently
        # with the two bulk updates below is refused all the same.
        await self._c("families").update_one({"_id": family}, {"$set": {"revoked": True}})
        await self._c("access").update_many({"family": family}, {"$set": {"revoked": True}})
        await self._c("refresh").update_many({"family": family}, {"$set": {"rotated": True}})

    async def put_refresh(
        self, token_hash: str, family: str, data: dict[str, Any], expires_at: int
    ) -> None:
        await self._c("refresh").insert_one(
            {
                "_id": token_hash,
                "family": family,
                "doc": _bytes(data),
                "rotated": False,
                "expires_at": expires_at,
                "exp": _date(expires_at),
            }
        )

    async def _family_live(self, family: str) -> bool:
        f = await self._c("families").find_one({"_id": family}, {"revoked": 1})
        return f is not None and not f["revoked"]

    async def get_refresh(self, token_hash: str) -> RefreshRecord | None:
        r = await self._c("refresh").find_one({"_id": token_hash})
        if r is None or not await self._family_live(r["family"]):
            return None
        return RefreshRecord(
            r["family"], dict(_loads(r["doc"])), bool(r["rotated"]), int(r["expires_at"])
        )

    async def mark_rotated(self, token_hash: str) -> bool:
        result = await self._c("refresh").update_one(
            {"_id": token_hash, "rotated": False}, {"$set": {"rotated": True}}
        )
        return result.modified_count > 0

    async def put_access(
        self, jti: str, family: str | None, client_id: str, expires_at: int
    ) -> None:
        await self._c("access").insert_one(
            {
                "_id": jti,
                "family": family,
                "client_id": client_id,
                "revoked": False,
                "expires_at": expires_at,
                "exp": _date(expires_at + DAY),
            }
        )

    async def access_active(self, jti: str) -> bool:
        a = await self._c("access").find_one({"_id": jti})
        if a is None or a["revoked"] or a["expires_at"] <= _now():
            return False
        family = a.get("family")
        if family is None:
            return True
        f = await self._c("families").find_one({"_id": family}, {"revoked": 1})
        return f is None or not f["revoked"]  # as SQLite's LEFT JOIN: a purged family is no veto

    async def revoke_access(self, jti: str) -> str | None:
        a = await self._c("access").find_one_and_update(
            {"_id": jti}, {"$set": {"revoked": True}}, projection={"family": 1}
        )
        return a.get("family") if a else None

    async def remember_jti(self, issuer: str, jti: str, expires_at: int) -> bool:
        key = {"i": issuer, "j": jti}
        coll = self._c("jtis")
        await coll.delete_one({"_id": key, "expires_at": {"$lte": _now()}})
        try:
            await coll.insert_one({"_id": key, "expires_at": expires_at, "exp": _date(expires_at)})
        except DuplicateKeyError:
            return False
        return True

    async def add_failure(self, key: str) -> None:
        at = _now()
        await self._c("failures").insert_one({"key": key, "at": at, "exp": _date(at + DAY)})

    async def count_failures(self, key: str, since: int) -> int:
        return await self._c("failures").count_documents({"key": key, "at": {"$gte": since}})

    async def purge(self) -> None:
        """What the TTL indexes do in the background, at once (as SQLite's purge)."""
        now = _now()
        await self._c("items").delete_many({"expires_at": {"$lte": now}})
        await self._c("jtis").delete_many({"expires_at": {"$lte": now}})
        await self._c("access").delete_many({"expires_at": {"$lte": now - DAY}})
        await self._c("refresh").delete_many({"expires_at": {"$lte": now}})
        await self._c("families").delete_many({"expires_at": {"$lte": now}})
        await self._c("failures").delete_many({"at": {"$lte": now - DAY}})


class MongoKeyRing(KeyRingBase):
    """Signing keys in one `auth_keys` document shared by every process on every host.

    The first process to start inserts a fresh document (`_id` is unique: of several starting at
    once exactly one insert succeeds, the others read the winner's). Rotation replaces it under a
    revision check. Each process caches the document and re-reads it when it meets an unknown
    `kid` and at most every `KEYS_REFRESH_S` seconds otherwise, so a rotation reaches all workers.
    """

    def __init__(self, store: MongoAuthStore) -> None:
        super().__init__()
        self.store = store
        self._rev = -1
        self._checked = 0.0

    @property
    def _coll(self) -> AsyncCollection[Doc]:
        return self.store.db["auth_keys"]

    async def open(self) -> None:
        if await self._coll.find_one({"_id": KEYS_ID}, {"_id": 1}) is None:
            doc = new_key_document()
            with suppress(DuplicateKeyError):  # another process created them first: use theirs
                await self._coll.insert_one({"_id": KEYS_ID, "doc": _bytes(doc), "rev": 0})
        await self.refresh(force=True)

    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < KEYS_REFRESH_S:
            return
        self._checked = time.monotonic()
        d = await self._coll.find_one({"_id": KEYS_ID, "rev": {"$ne": self._rev}})
        if d is not None:
            self._set_document(_loads(d["doc"]))
            self._rev = int(d["rev"])

    async def rotate(self) -> list[str]:
        while True:
            d = await self._coll.find_one({"_id": KEYS_ID})
            if d is None:
                await self.open()
                continue
            doc = rotated_document(_loads(d["doc"]))
            done = await self._coll.find_one_and_update(
                {"_id": KEYS_ID, "rev": d["rev"]},
                {"$set": {"doc": _bytes(doc)}, "$inc": {"rev": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if done is not None:  # else another rotation won the race: rotate on top of it
                await self.refresh(force=True)
                return current_kids(doc)
