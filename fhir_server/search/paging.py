"""Opaque, tamper-resistant page tokens for search and history paging.

A token carries the original query and the keyset position, signed with HMAC-SHA256 under a
secret kept in the data directory (so tokens survive restarts and work across workers), or, when
the storage is shared by several hosts (MongoDB), in the storage itself (`from_storage`), so a
page link made by one host is followed on any other.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.errors import BadRequest

if TYPE_CHECKING:
    from fhir_server.storage.base import Storage

SECRET_RECORD = ("server-secret", "page-signing-key")  # (kind, key) of the storage record


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> PageSigner:
        path = data_dir / "page-secret"
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: when several workers start at once, exactly one writes the key.
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        for _ in range(100):  # another worker may be between creating and writing the file
            secret = path.read_bytes()
            if len(secret) == 32:
                return cls(secret)
            time.sleep(0.01)
        raise RuntimeError(f"{path} does not hold a 32-byte key")

    @classmethod
    async def from_storage(cls, storage: Storage, wait_s: float = 60.0) -> PageSigner:
        """The key as a storage record, created once: of several processes starting at once, the
        one holding the lease writes it and the others read it."""
        kind, key = SECRET_RECORD
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        while True:
            record = await storage.get_record(kind, key)
            if record is not None:
                return cls(_unb64(str(record.doc["secret"])))
            if await storage.acquire_lease(key, owner, 30):
                try:
                    if await storage.get_record(kind, key) is None:
                        await storage.put_record(
                            kind, key, {"secret": _b64(secrets.token_bytes(32))}
                        )
                finally:
                    await storage.release_lease(key, owner)
                continue
            if time.monotonic() > deadline:
                raise RuntimeError("the page-signing key was not created in the storage in time")
            await asyncio.sleep(0.05)

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest()[:18])

    def sign(self, state: dict[str, Any]) -> str:
        payload = orjson.dumps(state)
        return f"{_b64(payload)}.{self._mac(payload)}"

    def verify(self, token: str) -> dict[str, Any]:
        try:
            body, mac = token.split(".", 1)
            payload = _unb64(body)
        except (ValueError, TypeError):
            raise BadRequest("Invalid page token", expression=["_page"]) from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise BadRequest("Invalid or tampered page token", expression=["_page"])
        state = orjson.loads(payload)
        if not isinstance(state, dict):
            raise BadRequest("Invalid page token", expression=["_page"])
        return state
