"""The server's signing keys: generated on first start in `<data-dir>/auth-keys.json` (mode 0600),
rotatable (`fhir-server keys rotate`), published (public parts only) at /auth/jwks.

One RS256 key signs id_tokens and access tokens; an ES384 key is kept too (access tokens may be
signed with it: settings.access_token_alg). Rotation makes new keys current and keeps the previous
ones for verification until tokens signed with them have expired.

`KeyRingBase` is what the authorization server uses (cached keys, read synchronously, and an async
`refresh`); `KeyRing` keeps the key document in the data directory, `MongoKeyRing`
(`mongo_store.py`) in the database, so that several hosts share it.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet, RSAKey

Jwk = RSAKey | ECKey
ALGS = ("RS256", "ES384")
KEEP_PER_ALG = 3


def keys_path(data_dir: Path) -> Path:
    return data_dir / "auth-keys.json"


def _new_key(alg: str) -> dict[str, Any]:
    kid = f"{alg.lower()}-{int(time.time())}-{secrets.token_hex(4)}"
    params: Any = {"kid": kid, "use": "sig", "alg": alg}
    key: Jwk
    if alg == "RS256":
        key = RSAKey.generate_key(2048, parameters=params, private=True)
    else:
        key = ECKey.generate_key("P-384", parameters=params, private=True)
    return dict(key.as_dict(private=True))


def _write_exclusive(path: Path, doc: dict[str, Any]) -> bool:
    """Write a new file atomically; False if another process created it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def _replace(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def new_key_document() -> dict[str, Any]:
    """A fresh key document: one new key per algorithm, all current."""
    fresh = [_new_key(a) for a in ALGS]
    return {"keys": fresh, "current": {k["alg"]: k["kid"] for k in fresh}}


def rotated_document(doc: dict[str, Any]) -> dict[str, Any]:
    """New current keys for every algorithm; the newest older ones stay for verification."""
    fresh = [_new_key(a) for a in ALGS]
    keep: list[dict[str, Any]] = []
    for alg in ALGS:
        old = [k for k in doc["keys"] if k["alg"] == alg]
        keep.extend(old[-(KEEP_PER_ALG - 1) :])
    return {"keys": keep + fresh, "current": {k["alg"]: k["kid"] for k in fresh}}


def current_kids(doc: dict[str, Any]) -> list[str]:
    return [doc["current"][a] for a in ALGS]


class KeyRingBase:
    """The key document, cached: signing and verification read it without I/O."""

    def __init__(self) -> None:
        self._doc: dict[str, Any] = {}
        self._keys: dict[str, Jwk] = {}

    def _set_document(self, doc: dict[str, Any]) -> None:
        keys: dict[str, Jwk] = {}
        for d in doc["keys"]:
            keys[d["kid"]] = RSAKey.import_key(d) if d["kty"] == "RSA" else ECKey.import_key(d)
        self._doc = doc
        self._keys = keys

    async def refresh(self, force: bool = False) -> None:
        """Pick up a rotation made elsewhere (the CLI, another worker or host)."""

    def signing_key(self, alg: str) -> Jwk:
        return self._keys[self._doc["current"][alg]]

    def key(self, kid: str) -> Jwk | None:
        return self._keys.get(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self._keys.values()]}

    def key_set(self) -> KeySet:
        return KeySet(list(self._keys.values()))


class KeyRing(KeyRingBase):
    """Keys in `<data-dir>/auth-keys.json`, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._mtime = 0.0

    @classmethod
    def load_or_create(cls, data_dir: Path) -> KeyRing:
        ring = cls(keys_path(data_dir))
        if not ring.path.exists():
            _write_exclusive(ring.path, new_key_document())
        ring.reload()
        return ring

    def reload(self) -> None:
        self._mtime = self.path.stat().st_mtime
        self._set_document(json.loads(self.path.read_text()))

    def reload_if_changed(self) -> None:
        """Another process (the CLI, another worker) may have rotated the keys."""
        try:
            if self.path.stat().st_mtime != self._mtime:
                self.reload()
        except OSError:
            pass

    async def refresh(self, force: bool = False) -> None:
        if force:  # otherwise `key` and `jwks` check the file themselves, as they always did
            self.reload_if_changed()

    def key(self, kid: str) -> Jwk | None:
        if kid not in self._keys:
            self.reload_if_changed()
        return self._keys.get(kid)

    def jwks(self) -> dict[str, Any]:
        self.reload_if_changed()
        return super().jwks()

    def rotate(self) -> list[str]:
        """New current keys for every algorithm; the newest older ones stay for verification."""
        self.reload()
        doc = rotated_document(self._doc)
        _replace(self.path, doc)
        self.reload()
        return current_kids(doc)
