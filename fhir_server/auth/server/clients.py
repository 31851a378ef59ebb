"""Client registration: one validation of client metadata (RFC 7591 names) for the CLI and
/auth/register."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from fhir_server.auth.scopes import parse_scope
from fhir_server.auth.server import scopeset
from fhir_server.auth.server.models import (
    AUTH_METHODS,
    GRANT_TYPES,
    Client,
    new_client_secret,
    secret_digest,
)

# CLI shorthands for the client types of SMART App Launch and Backend Services.
CLIENT_TYPES: dict[str, tuple[str, list[str]]] = {
    "public": ("none", ["authorization_code", "refresh_token"]),
    "symmetric": ("client_secret_basic", ["authorization_code", "refresh_token"]),
    "asymmetric": ("private_key_jwt", ["authorization_code", "refresh_token"]),
    "backend": ("private_key_jwt", ["client_credentials"]),
}


class InvalidMetadata(ValueError):
    def __init__(self, message: str, error: str = "invalid_client_metadata") -> None:
        super().__init__(message)
        self.error = error


_CONTEXTS = ("patient/", "user/", "system/")
_NON_RESOURCE = ("system/launch",)


def _check_scope(scope: str) -> None:
    """A resource scope must be well formed (`patient/Foo.zz` is not); other scopes (openid,
    launch/patient, offline_access, system/launch, ...) are taken as they are."""
    if not scope.startswith(_CONTEXTS) or scope in _NON_RESOURCE:
        return
    if scopeset.parse(scope) is None or parse_scope(scope) is None:
        raise InvalidMetadata(f"scope {scope!r} is not a valid SMART resource scope")


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if (
        not parts.scheme
        or parts.fragment
        or (parts.scheme in ("http", "https") and not parts.netloc)
    ):
        raise InvalidMetadata(
            f"redirect URI {uri!r} must be absolute, without a fragment", "invalid_redirect_uri"
        )


def _check_jwks(jwks: Any) -> dict[str, Any]:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidMetadata("jwks must be an object with a non-empty 'keys' array")
    for key in jwks["keys"]:
        if not isinstance(key, dict) or not key.get("kty") or not key.get("kid"):
            raise InvalidMetadata("every key in jwks needs 'kty' and 'kid'")
        if "d" in key:
            raise InvalidMetadata("jwks must hold public keys only")
    return jwks


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidMetadata(f"{what} must be an absolute http(s) URL")
    return url


def new_client(
    meta: dict[str, Any], *, default_method: str = "client_secret_basic"
) -> tuple[Client, str | None]:
    """Validate metadata and build a client; returns it and its secret (symmetric clients only)."""
    method = meta.get("token_endpoint_auth_method") or default_method
    if method not in AUTH_METHODS:
        raise InvalidMetadata(
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}"
        )
    grants = meta.get("grant_types") or ["authorization_code"]
    if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        raise InvalidMetadata("grant_types must be an array of strings")
    for g in grants:
        if g not in GRANT_TYPES:
            raise InvalidMetadata(f"grant type {g!r} is not supported")
    if "client_credentials" in grants and method != "private_key_jwt":
        raise InvalidMetadata("client_credentials (Backend Services) requires private_key_jwt")
    if "client_credentials" in grants and "authorization_code" in grants:
        raise InvalidMetadata("register Backend Services and user-facing apps as separate clients")
    redirect_uris = meta.get("redirect_uris") or []
    if not isinstance(redirect_uris, list) or not all(isinstance(u, str) for u in redirect_uris):
        raise InvalidMetadata("redirect_uris must be an array of strings")
    if "authorization_code" in grants and not redirect_uris:
        raise InvalidMetadata(
            "redirect_uris is required for authorization_code", "invalid_redirect_uri"
        )
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    scope = meta.get("scope") or ""
    if not isinstance(scope, str):
        raise InvalidMetadata("scope must be a space-separated string")
    if "client_credentials" in grants and not scope.strip():
        raise InvalidMetadata("Backend Services clients must be registered with their scopes")
    for item in scope.split():
        _check_scope(item)
    jwks, jwks_uri = meta.get("jwks"), meta.get("jwks_uri")
    if method == "private_key_jwt":
        if (jwks is None) == (jwks_uri is None):
            raise InvalidMetadata("private_key_jwt needs exactly one of jwks or jwks_uri")
        if jwks is not None:
            jwks = _check_jwks(jwks)
        if jwks_uri is not None:
            jwks_uri = _check_url(str(jwks_uri), "jwks_uri")
            host = urlsplit(jwks_uri).hostname or ""
            if not jwks_uri.startswith("https://") and host not in (
                "localhost",
                "127.0.0.1",
                "::1",
            ):
                raise InvalidMetadata("jwks_uri must use https")
    elif jwks is not None or jwks_uri is not None:
        raise InvalidMetadata("jwks and jwks_uri are only for private_key_jwt clients")
    launch_uri = meta.get("launch_uri") or meta.get("initiate_login_uri")
    if launch_uri is not None:
        launch_uri = _check_url(str(launch_uri), "launch_uri")
    client_id = meta.get("client_id") or secrets.token_urlsafe(16)
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 128:
        raise InvalidMetadata("client_id must be a string of at most 128 characters")
    secret = new_client_secret() if method == "client_secret_basic" else None
    client = Client(
        client_id=client_id,
        client_name=str(meta.get("client_name") or ""),
        token_endpoint_auth_method=method,
        redirect_uris=list(redirect_uris),
        grant_types=list(dict.fromkeys(grants)),
        scope=" ".join(scope.split()),
        jwks=jwks,
        jwks_uri=jwks_uri,
        launch_uri=launch_uri,
        client_secret_hash=secret_digest(secret) if secret else None,
        created_at=int(time.time()),
    )
    return client, secret


def client_document(client: Client, secret: str | None) -> dict[str, Any]:
    """The registration response / CLI output (RFC 7591 §3.2.1)."""
    doc = client.public_json()
    if secret is not None:
        doc["client_secret"] = secret
        doc["client_secret_expires_at"] = 0
    return doc
