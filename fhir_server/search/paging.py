"""Opaque, tamper-resistant page tokens for search and history paging.

A token carries the original query and the keyset position, signed with HMAC-SHA256 under a
secret kept in the data directory (so tokens survive restarts and work across workers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

import orjson

from fhir_server.errors import BadRequest


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
