"""POST /auth/token: authorization_code (PKCE S256 for every client), refresh_token (rotation,
reuse revokes the whole grant, a refused request leaves the token usable) and client_credentials
(Backend Services: private_key_jwt, at most 300 s, no refresh token, registered scopes only)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

from fhir_server.auth.server import scopeset
from fhir_server.auth.server.client_auth import (
    authenticate_client,
    single,
    unauthorized_client,
)
from fhir_server.auth.server.core import AuthServer, digest, new_handle, now, peek
from fhir_server.auth.server.errors import (
    OAuthError,
    invalid_grant,
    invalid_request,
    invalid_scope,
)
from fhir_server.auth.server.models import Client

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
ONLINE_ACCESS_LIFETIME = 12 * 3600
USED_CODE_MEMORY = 3600  # a replayed code within this time revokes what it gave


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
        .rstrip(b"=")
        .decode()
    )


def check_pkce(verifier: str | None, challenge: str) -> None:
    if not verifier:
        raise invalid_grant("code_verifier is required")
    if not _VERIFIER.match(verifier):
        raise invalid_grant("code_verifier is malformed")
    if not hmac.compare_digest(s256(verifier), challenge):
        raise invalid_grant("code_verifier does not match the code_challenge")


async def token_response(
    srv: AuthServer, client: Client, grant: dict[str, Any], family: str | None, family_exp: int
) -> dict[str, Any]:
    """Access token (and rotated refresh token, id_token, launch context) for a grant."""
    scopes: list[str] = grant["scopes"]
    context: dict[str, Any] = {}
    for name in ("fhirContext", "intent", "tenant"):
        if grant.get(name):
            context[name] = grant[name]
    if grant.get("patient"):
        context["need_patient_banner"] = bool(grant.get("need_patient_banner", True))
        context["smart_style_url"] = srv.urls.auth("smart-style.json")
    access, exp = await srv.issue_access_token(
        client_id=client.client_id,
        scopes=scopes,
        lifetime=srv.settings.access_token_lifetime,
        family=family,
        subject=grant.get("sub"),
        fhir_user=grant.get("fhirUser") if "fhirUser" in scopes else None,
        patient=grant.get("patient"),
        encounter=grant.get("encounter"),
        context=context,
    )
    out: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": exp - now(),
        "scope": " ".join(scopes),
    }
    if family is not None:
        refresh = new_handle()
        await srv.store.put_refresh(digest(refresh), family, grant, family_exp)
        out["refresh_token"] = refresh
    if "openid" in scopes and grant.get("sub"):
        out["id_token"] = srv.id_token(
            client_id=client.client_id,
            subject=grant["sub"],
            fhir_user=grant.get("fhirUser") if "fhirUser" in scopes else None,
            nonce=grant.get("nonce"),
        )
    for name in ("patient", "encounter"):
        if grant.get(name):
            out[name] = grant[name]
    out.update(context)
    return out


async def _authorization_code(srv: AuthServer, client: Client, p: dict[str, str]) -> dict[str, Any]:
    code = p.get("code")
    if not code:
        raise invalid_request("code is required")
    data = await srv.store.take_item("code", digest(code))
    if data is None:
        used = await srv.store.get_item("used_code", digest(code))
        if used is not None:  # a code replayed: revoke what it gave (RFC 6749 §4.1.2)
            await srv.store.revoke_access(used["jti"])
            if used.get("family"):
                await srv.store.revoke_family(used["family"])
        raise invalid_grant("the authorization code is invalid, expired or already used")
    if data["client_id"] != client.client_id:
        raise invalid_grant("the authorization code was issued to another client")
    if p.get("redirect_uri") != data["redirect_uri"]:
        raise invalid_grant("redirect_uri differs from the authorization request")
    check_pkce(p.get("code_verifier"), data["code_challenge"])
    grant = data["grant"]
    family: str | None = None
    family_exp = 0
    scopes = grant["scopes"]
    wants_refresh = "offline_access" in scopes or "online_access" in scopes
    if wants_refresh and "refresh_token" in client.grant_types:
        family = secrets.token_urlsafe(18)
        lifetime = (
            srv.settings.refresh_token_lifetime
            if "offline_access" in scopes
            else ONLINE_ACCESS_LIFETIME
        )
        family_exp = now() + lifetime
        await srv.store.create_family(family, client.client_id, family_exp)
    out = await token_response(srv, client, grant, family, family_exp)
    seen = peek(out["access_token"])
    used = {"jti": seen.claims["jti"] if seen else "", "family": family}
    await srv.store.put_item("used_code", digest(code), used, now() + USED_CODE_MEMORY)
    return out


async def _refresh_token(srv: AuthServer, client: Client, p: dict[str, str]) -> dict[str, Any]:
    token = p.get("refresh_token")
    if not token:
        raise invalid_request("refresh_token is required")
    if "refresh_token" not in client.grant_types:
        raise unauthorized_client("this client may not use refresh tokens")
    h = digest(token)
    record = await srv.store.get_refresh(h)
    if record is None or record.expires_at <= now():
        raise invalid_grant("the refresh token is invalid, expired or revoked")
    grant = dict(record.data)
    if grant["client_id"] != client.client_id:
        raise invalid_grant("the refresh token was issued to another client")
    if record.rotated:
        # A rotated token came back: someone holds a copy. End the whole grant.
        await srv.store.revoke_family(record.family)
        raise invalid_grant("the refresh token was already used; the grant is revoked")
    requested = p.get("scope")
    if requested is not None:
        wanted = list(dict.fromkeys(requested.split()))
        if not wanted or not all(scopeset.covered(grant["scopes"], s) for s in wanted):
            raise invalid_scope("scope must be a subset of the scopes originally granted")
        # the granted order first (a scope narrowed semantically, patient/*.rs -> Patient.rs, after)
        grant["scopes"] = [s for s in grant["scopes"] if s in wanted] + [
            s for s in wanted if s not in grant["scopes"]
        ]
    if not await srv.store.mark_rotated(h):
        await srv.store.revoke_family(record.family)
        raise invalid_grant("the refresh token was already used; the grant is revoked")
    return await token_response(srv, client, grant, record.family, record.expires_at)


async def _client_credentials(srv: AuthServer, client: Client, p: dict[str, str]) -> dict[str, Any]:
    if (
        client.token_endpoint_auth_method != "private_key_jwt"
        or "client_credentials" not in client.grant_types
    ):
        raise unauthorized_client("this client is not registered for Backend Services")
    requested = (p.get("scope") or "").split()
    if not requested:
        raise invalid_scope("scope is required")
    allowed = client.allowed_scopes()
    granted = scopeset.narrow(allowed, requested)
    if not granted:
        raise invalid_scope("none of the requested scopes is registered for this client")
    lifetime = min(srv.settings.backend_token_lifetime, 300)
    access, exp = await srv.issue_access_token(
        client_id=client.client_id, scopes=granted, lifetime=lifetime, family=None
    )
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": exp - now(),
        "scope": " ".join(granted),
    }


async def handle(
    srv: AuthServer, form: list[tuple[str, str]], authorization: str | None
) -> dict[str, Any]:
    p = single(form)
    grant_type = p.get("grant_type")
    if not grant_type:
        raise invalid_request("grant_type is required")
    if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
        raise OAuthError("unsupported_grant_type", "grant_type is not supported")
    client = await authenticate_client(srv, p, authorization)
    if grant_type == "authorization_code":
        return await _authorization_code(srv, client, p)
    if grant_type == "refresh_token":
        return await _refresh_token(srv, client, p)
    return await _client_credentials(srv, client, p)
