"""The authorization server's state and its token primitives: URLs, keys, store, issuing and
verifying the server's own JWTs, fetching client JWKS (SSRF-guarded, Cache-Control honoured)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_server.auth.server.keys import KeyRingBase
from fhir_server.auth.server.store import AuthStore
from fhir_server.settings import Settings

ACCESS_TOKEN_TYP = "at+jwt"
JWKS_MAX_BYTES = 64 * 1024


def digest(value: str) -> str:
    """Codes, refresh tokens, launch handles and the like are stored by this digest only."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_handle() -> str:
    return secrets.token_urlsafe(32)


def now() -> int:
    return int(time.time())


def public_origin(settings: Settings) -> str:
    """--public-url, or http://HOST:PORT of the listening socket."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


@dataclass(frozen=True)
class Urls:
    origin: str

    @property
    def issuer(self) -> str:
        return self.origin

    @property
    def fhir_base(self) -> str:
        return f"{self.origin}/fhir"

    def auth(self, name: str) -> str:
        return f"{self.origin}/auth/{name}"


@dataclass(frozen=True)
class Unverified:
    header: dict[str, Any]
    claims: dict[str, Any]


def peek(token: str) -> Unverified | None:
    """Header and claims of a compact JWS, before any verification (to choose the key)."""
    if token.count(".") != 2 or len(token) > 16384:
        return None
    try:
        obj = jws.extract_compact(token.encode("ascii"))
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, UnicodeError):
        return None
    if not isinstance(claims, dict):
        return None
    return Unverified(dict(obj.protected), claims)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksError(Exception):
    pass


_MAX_AGE = re.compile(r"max-age=(\d+)")


@dataclass
class JwksCache:
    """Fetched key sets, kept no longer than their Cache-Control allows (no header: not kept)."""

    transport: httpx.AsyncBaseTransport | None = None
    entries: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    async def get(self, url: str) -> dict[str, Any]:
        hit = self.entries.get(url)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        parts = urlsplit(url)
        if parts.scheme != "https" and not (
            parts.scheme == "http" and _loopback(parts.hostname or "")
        ):
            raise JwksError("JWKS URLs must use https")
        try:
            async with (
                httpx.AsyncClient(
                    transport=self.transport, timeout=5.0, follow_redirects=False
                ) as client,
                client.stream("GET", url, headers={"Accept": "application/json"}) as r,
            ):
                if r.status_code != 200:
                    raise JwksError(f"JWKS URL answered {r.status_code}")
                body = b""
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > JWKS_MAX_BYTES:
                        raise JwksError("JWKS document too large")
                cache_control = r.headers.get("cache-control", "").lower()
        except httpx.HTTPError as exc:
            raise JwksError(f"JWKS URL could not be fetched ({type(exc).__name__})") from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise JwksError("JWKS URL did not return JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
            raise JwksError("JWKS document has no keys")
        m = _MAX_AGE.search(cache_control)
        if m and "no-store" not in cache_control and "no-cache" not in cache_control:
            self.entries[url] = (time.monotonic() + min(int(m.group(1)), 3600), doc)
        else:
            self.entries.pop(url, None)
        return doc


def select_key(jwks: dict[str, Any], kid: str | None, alg: str) -> RSAKey | ECKey | None:
    """Exactly one key with this kid and a kty fitting alg; otherwise None."""
    kty = {"RS": "RSA", "PS": "RSA", "ES": "EC"}.get(alg[:2])
    matches = [
        k
        for k in jwks.get("keys", [])
        if isinstance(k, dict)
        and k.get("kid") == kid
        and k.get("kty") == kty
        and k.get("alg") in (None, alg)
        and "d" not in k
    ]
    if len(matches) != 1:
        return None
    try:
        return RSAKey.import_key(matches[0]) if kty == "RSA" else ECKey.import_key(matches[0])
    except (JoseError, ValueError, TypeError):
        return None


def verify_jws(token: str, key: RSAKey | ECKey | KeySet, alg: str) -> dict[str, Any] | None:
    try:
        return dict(jwt.decode(token, key, algorithms=[alg]).claims)
    except (JoseError, ValueError, TypeError):
        return None


class AuthServer:
    def __init__(self, settings: Settings, store: AuthStore, keys: KeyRingBase) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.urls = Urls(public_origin(settings))
        self.jwks_cache = JwksCache()

    # signing -------------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], alg: str, typ: str) -> str:
        key = self.keys.signing_key(alg)
        header = {"alg": alg, "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key, algorithms=[alg])

    async def issue_access_token(
        self,
        *,
        client_id: str,
        scopes: list[str],
        lifetime: int,
        family: str | None,
        subject: str | None = None,
        fhir_user: str | None = None,
        patient: str | None = None,
        encounter: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """`context`: other launch context of the token response (fhirContext,
        need_patient_banner, smart_style_url, intent, tenant), kept in the token so that
        introspection can echo it (SMART token introspection)."""
        await self.keys.refresh()  # a rotation made elsewhere (MongoDB keys; throttled)
        issued = now()
        exp = issued + lifetime
        jti = secrets.token_urlsafe(18)
        claims: dict[str, Any] = {
            "iss": self.urls.issuer,
            "sub": subject or client_id,
            "aud": self.urls.fhir_base,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": issued,
            "exp": exp,
            "jti": jti,
        }
        for name, value in (
            ("fhirUser", fhir_user),
            ("patient", patient),
            ("encounter", encounter),
        ):
            if value:
                claims[name] = value
        for name, item in (context or {}).items():
            if name not in claims and item is not None:
                claims[name] = item
        await self.store.put_access(jti, family, client_id, exp)
        return self.sign(claims, self.settings.access_token_alg, ACCESS_TOKEN_TYP), exp

    def id_token(
        self, *, client_id: str, subject: str, fhir_user: str | None, nonce: str | None
    ) -> str:
        issued = now()
        claims: dict[str, Any] = {
            "iss": self.urls.issuer,
            "sub": subject,
            "aud": client_id,
            "iat": issued,
            "exp": issued + self.settings.access_token_lifetime,
        }
        if fhir_user:
            claims["fhirUser"] = f"{self.urls.fhir_base}/{fhir_user}"
        if nonce:
            claims["nonce"] = nonce
        return self.sign(claims, "RS256", "JWT")

    # verifying own access tokens ---------------------------------------------------------------------

    async def verify_access_token(self, token: str) -> tuple[dict[str, Any] | None, str]:
        """Claims of an active access token issued here, or None and why not."""
        seen = peek(token)
        if seen is None:
            return None, "malformed token"
        header = seen.header
        alg = header.get("alg")
        if header.get("typ") != ACCESS_TOKEN_TYP or alg not in ("RS256", "ES384"):
            return None, "not an access token of this server"
        kid = str(header.get("kid"))
        key = self.keys.key(kid)
        if key is None:
            await self.keys.refresh(force=True)  # another worker may have rotated the keys
            key = self.keys.key(kid)
        if key is None:
            return None, "unknown signing key"
        claims = verify_jws(token, key, str(alg))
        if claims is None:
            return None, "invalid signature"
        if claims.get("iss") != self.urls.issuer:
            return None, "wrong issuer"
        aud = claims.get("aud")
        if aud != self.urls.fhir_base:
            return None, "token audience is not this FHIR server"
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now():
            return None, "token expired"
        if not await self.store.access_active(str(claims.get("jti"))):
            return None, "token revoked"
        return claims, ""
