"""The authorization server's state behind one small async Protocol.

Clients, users, short-lived single-use items (pending authorizations, codes, launch contexts),
refresh-token families, issued access tokens and their revocation, the client-assertion `jti`
replay cache and failed-login counters. `SqliteAuthStore` keeps them in `<data-dir>/auth.db`
(WAL, so the CLI and every server worker share it while the server runs); `MongoAuthStore`
(`mongo_store.py`) keeps them in the MongoDB database when that is the FHIR storage.

Secrets never reach the store in clear: callers pass SHA-256 digests of codes, tokens and handles.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import orjson

from fhir_server.auth.server.keys import KeyRing, KeyRingBase
from fhir_server.auth.server.models import Client, User

T = TypeVar("T")


@dataclass(frozen=True)
class RefreshRecord:
    family: str
    data: dict[str, Any]
    rotated: bool
    expires_at: int


class AuthStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # clients and users
    async def put_client(self, client: Client) -> None: ...
    async def get_client(self, client_id: str) -> Client | None: ...
    async def list_clients(self) -> list[Client]: ...
    async def delete_client(self, client_id: str) -> bool: ...  # also revokes its grants
    async def put_user(self, user: User) -> None: ...
    async def get_user(self, username: str) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    async def delete_user(self, username: str) -> bool: ...

    # short-lived items: kind is "txn" (pending authorization), "code" or "launch"
    async def put_item(
        self, kind: str, key: str, data: dict[str, Any], expires_at: int
    ) -> None: ...
    async def get_item(self, kind: str, key: str) -> dict[str, Any] | None: ...
    async def take_item(self, kind: str, key: str) -> dict[str, Any] | None:
        """Return and delete in one step (single use): of two concurrent takers only one wins."""
        ...

    async def delete_item(self, kind: str, key: str) -> None: ...

    # grants: a family is one authorization; its refresh tokens rotate, its access tokens die with it
    async def create_family(self, family: str, client_id: str, expires_at: int) -> None: ...
    async def revoke_family(self, family: str) -> None: ...
    async def put_refresh(
        self, token_hash: str, family: str, data: dict[str, Any], expires_at: int
    ) -> None: ...
    async def get_refresh(self, token_hash: str) -> RefreshRecord | None: ...
    async def mark_rotated(self, token_hash: str) -> bool:
        """Mark a refresh token used; False when it already was (reuse)."""
        ...

    async def put_access(
        self, jti: str, family: str | None, client_id: str, expires_at: int
    ) -> None: ...
    async def access_active(self, jti: str) -> bool: ...
    async def revoke_access(self, jti: str) -> str | None:
        """Revoke one access token; returns its family, if any."""
        ...

    # client-assertion replay cache
    async def remember_jti(self, issuer: str, jti: str, expires_at: int) -> bool:
        """False when (issuer, jti) was seen before and has not expired."""
        ...

    # failed logins
    async def add_failure(self, key: str) -> None: ...
    async def count_failures(self, key: str, since: int) -> int: ...

    async def purge(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  kind TEXT NOT NULL, key TEXT NOT NULL, doc BLOB NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS families (
  family TEXT PRIMARY KEY, client_id TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
  expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refresh_tokens (
  token_hash TEXT PRIMARY KEY, family TEXT NOT NULL, doc BLOB NOT NULL,
  rotated INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS access_tokens (
  jti TEXT PRIMARY KEY, family TEXT, client_id TEXT NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assertion_jtis (
  issuer TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (issuer, jti));
CREATE TABLE IF NOT EXISTS login_failures (key TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (key, at);
CREATE INDEX IF NOT EXISTS refresh_family ON refresh_tokens (family);
"""


def _now() -> int:
    return int(time.time())


class SqliteAuthStore:
    """One connection, used from worker threads under a lock; WAL lets other processes in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, fn)

    async def open(self) -> None:
        await self._call(lambda c: None)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # clients and users ---------------------------------------------------------------------------

    async def put_client(self, client: Client) -> None:
        doc = orjson.dumps(client.to_json())
        await self._call(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO clients (client_id, doc) VALUES (?, ?)",
                (client.client_id, doc),
            )
        )

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._call(
            lambda c: c.execute(
                "SELECT doc FROM clients WHERE client_id = ?", (client_id,)
            ).fetchone()
        )
        return Client.from_json(orjson.loads(row[0])) if row else None

    async def list_clients(self) -> list[Client]:
        rows = await self._call(
            lambda c: c.execute("SELECT doc FROM clients ORDER BY client_id").fetchall()
        )
        return [Client.from_json(orjson.loads(r[0])) for r in rows]

    async def delete_client(self, client_id: str) -> bool:
        """Removes the client and revokes its grants: its live access tokens stop working."""

        def delete(c: sqlite3.Connection) -> int:
            n = c.execute("DELETE FROM clients WHERE client_id = ?", (client_id,)).rowcount
            c.execute("UPDATE families SET revoked = 1 WHERE client_id = ?", (client_id,))
            c.execute("UPDATE access_tokens SET revoked = 1 WHERE client_id = ?", (client_id,))
            return int(n)

        return await self._call(delete) > 0

    async def put_user(self, user: User) -> None:
        doc = orjson.dumps(user.to_json())
        await self._call(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO users (username, doc) VALUES (?, ?)", (user.username, doc)
            )
        )

    async def get_user(self, username: str) -> User | None:
        row = await self._call(
            lambda c: c.execute("SELECT doc FROM users WHERE username = ?", (username,)).fetchone()
        )
        return User.from_json(orjson.loads(row[0])) if row else None

    async def list_users(self) -> list[User]:
        rows = await self._call(
            lambda c: c.execute("SELECT doc FROM users ORDER BY username").fetchall()
        )
        return [User.from_json(orjson.loads(r[0])) for r in rows]

    async def delete_user(self, username: str) -> bool:
        n = await self._call(
            lambda c: c.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount
        )
        return n > 0

    # short-lived items -----------------------------------------------------------------------------

    async def put_item(self, kind: str, key: str, data: dict[str, Any], expires_at: int) -> None:
        doc = orjson.dumps(data)
        await self._call(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO items (kind, key, doc, expires_at) VALUES (?, ?, ?, ?)",
                (kind, key, doc, expires_at),
            )
        )

    async def get_item(self, kind: str, key: str) -> dict[str, Any] | None:
        row = await self._call(
            lambda c: c.execute(
                "SELECT doc FROM items WHERE kind = ? AND key = ? AND expires_at > ?",
                (kind, key, _now()),
            ).fetchone()
        )
        return orjson.loads(row[0]) if row else None

    async def take_item(self, kind: str, key: str) -> dict[str, Any] | None:
        def take(c: sqlite3.Connection) -> Any:
            row = c.execute(
                "SELECT doc, expires_at FROM items WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            if row is None:
                return None
            c.execute("DELETE FROM items WHERE kind = ? AND key = ?", (kind, key))
            return orjson.loads(row[0]) if row[1] > _now() else None

        return await self._call(take)

    async def delete_item(self, kind: str, key: str) -> None:
        await self._call(
            lambda c: c.execute("DELETE FROM items WHERE kind = ? AND key = ?", (kind, key))
        )

    # grants --------------------------------------------------------------------------------------

    async def create_family(self, family: str, client_id: str, expires_at: int) -> None:
        await self._call(
            lambda c: c.execute(
                "INSERT INTO families (family, client_id, expires_at) VALUES (?, ?, ?)",
                (family, client_id, expires_at),
            )
        )

    async def revoke_family(self, family: str) -> None:
        def revoke(c: sqlite3.Connection) -> None:
            c.execute("UPDATE families SET revoked = 1 WHERE family = ?", (family,))
            c.execute("UPDATE access_tokens SET revoked = 1 WHERE family = ?", (family,))
            c.execute("UPDATE refresh_tokens SET rotated = 1 WHERE family = ?", (family,))

        await self._call(revoke)

    async def put_refresh(
        self, token_hash: str, family: str, data: dict[str, Any], expires_at: int
    ) -> None:
        doc = orjson.dumps(data)
        await self._call(
            lambda c: c.execute(
                "INSERT INTO refresh_tokens (token_hash, family, doc, expires_at) VALUES (?,?,?,?)",
                (token_hash, family, doc, expires_at),
            )
        )

    async def get_refresh(self, token_hash: str) -> RefreshRecord | None:
        row = await self._call(
            lambda c: c.execute(
                "SELECT r.family, r.doc, r.rotated, r.expires_at, f.revoked FROM refresh_tokens r "
                "JOIN families f ON f.family = r.family WHERE r.token_hash = ?",
                (token_hash,),
            ).fetchone()
        )
        if row is None or row[4]:
            return None
        return RefreshRecord(row[0], orjson.loads(row[1]), bool(row[2]), int(row[3]))

    async def mark_rotated(self, token_hash: str) -> bool:
        n = await self._call(
            lambda c: (
                c.execute(
                    "UPDATE refresh_tokens SET rotated = 1 WHERE token_hash = ? AND rotated = 0",
                    (token_hash,),
                ).rowcount
            )
        )
        return n > 0

    async def put_access(
        self, jti: str, family: str | None, client_id: str, expires_at: int
    ) -> None:
        await self._call(
            lambda c: c.execute(
                "INSERT INTO access_tokens (jti, family, client_id, expires_at) VALUES (?,?,?,?)",
                (jti, family, client_id, expires_at),
            )
        )

    async def access_active(self, jti: str) -> bool:
        row = await self._call(
            lambda c: c.execute(
                "SELECT a.revoked, COALESCE(f.revoked, 0), a.expires_at FROM access_tokens a "
                "LEFT JOIN families f ON f.family = a.family WHERE a.jti = ?",
                (jti,),
            ).fetchone()
        )
        return row is not None and not row[0] and not row[1] and row[2] > _now()

    async def revoke_access(self, jti: str) -> str | None:
        def revoke(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT family FROM access_tokens WHERE jti = ?", (jti,)).fetchone()
            c.execute("UPDATE access_tokens SET revoked = 1 WHERE jti = ?", (jti,))
            return row[0] if row else None

        return await self._call(revoke)

    async def remember_jti(self, issuer: str, jti: str, expires_at: int) -> bool:
        def remember(c: sqlite3.Connection) -> bool:
            c.execute(
                "DELETE FROM assertion_jtis WHERE issuer = ? AND jti = ? AND expires_at <= ?",
                (issuer, jti, _now()),
            )
            try:
                c.execute(
                    "INSERT INTO assertion_jtis (issuer, jti, expires_at) VALUES (?, ?, ?)",
                    (issuer, jti, expires_at),
                )
            except sqlite3.IntegrityError:
                return False
            return True

        return await self._call(remember)

    async def add_failure(self, key: str) -> None:
        await self._call(
            lambda c: c.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", (key, _now()))
        )

    async def count_failures(self, key: str, since: int) -> int:
        row = await self._call(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM login_failures WHERE key = ? AND at >= ?", (key, since)
            ).fetchone()
        )
        return int(row[0])

    async def purge(self) -> None:
        def purge(c: sqlite3.Connection) -> None:
            now = _now()
            c.execute("DELETE FROM items WHERE expires_at <= ?", (now,))
            c.execute("DELETE FROM assertion_jtis WHERE expires_at <= ?", (now,))
            c.execute("DELETE FROM access_tokens WHERE expires_at <= ?", (now - 86400,))
            c.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?", (now,))
            c.execute("DELETE FROM families WHERE expires_at <= ?", (now,))
            c.execute("DELETE FROM login_failures WHERE at <= ?", (now - 86400,))

        await self._call(purge)


def auth_store_path(data_dir: Path) -> Path:
    return data_dir / "auth.db"


def is_mongodb_url(storage_url: str | None) -> bool:
    return bool(storage_url) and urlsplit(storage_url or "").scheme in ("mongodb", "mongodb+srv")


def create_auth_store(data_dir: Path, storage_url: str | None = None) -> AuthStore:
    """The one place the auth store is chosen: in the FHIR database (collections `auth_*`) when
    the storage URL is MongoDB's, so every server process on every host shares it; otherwise
    `<data-dir>/auth.db`."""
    if is_mongodb_url(storage_url):
        from fhir_server.auth.server.mongo_store import MongoAuthStore

        assert storage_url is not None
        return MongoAuthStore(storage_url)
    return SqliteAuthStore(auth_store_path(data_dir))


async def open_key_ring(data_dir: Path, store: AuthStore) -> KeyRingBase:
    """The signing keys beside the auth store: in its database on MongoDB (shared by every host),
    else `<data-dir>/auth-keys.json`. `store` must be open."""
    from fhir_server.auth.server.mongo_store import MongoAuthStore, MongoKeyRing

    if isinstance(store, MongoAuthStore):
        ring = MongoKeyRing(store)
        await ring.open()
        return ring
    return await asyncio.to_thread(KeyRing.load_or_create, data_dir)
