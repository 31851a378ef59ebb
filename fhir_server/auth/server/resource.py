"""The resource server's side: `Authenticate` for the FHIR API. Accepts the server's own access
tokens (signature with current or rotated keys, iss, aud == FHIR base exactly, exp, revocation
looked up in the shared store on every request) and, when configured, an external issuer's
tokens (JWT verified against its JWKS URL, or RFC 7662 introspection)."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import quote

import httpx

from fhir_server.auth.grant import AccessGrant, Authenticate
from fhir_server.auth.server.core import (
    AuthServer,
    JwksError,
    digest,
    now,
    peek,
    select_key,
    verify_jws,
)
from fhir_server.errors import Unauthorized

REALM = 'Bearer realm="fhir-server"'
EXTERNAL_ALGS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")


def unauthorized(description: str | None) -> Unauthorized:
    if description is None:
        header = REALM
        message = "Authorization required: send an access token as 'Authorization: Bearer ...'"
    else:
        safe = description.replace('"', "'")
        header = f'{REALM}, error="invalid_token", error_description="{safe}"'
        message = f"Invalid access token: {description}"
    return Unauthorized(message, headers={"WWW-Authenticate": header})


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _scopes(claims: dict[str, Any]) -> tuple[str, ...]:
    scope = claims.get("scope") or claims.get("scp") or ""
    if isinstance(scope, list):
        return tuple(str(s) for s in scope)
    return tuple(str(scope).split())


def grant_from_claims(claims: dict[str, Any], token: str) -> AccessGrant:
    client_id = claims.get("client_id") or claims.get("azp") or claims.get("cid") or ""
    sub = claims.get("sub")
    fhir_user = claims.get("fhirUser")
    if isinstance(fhir_user, str) and "/fhir/" in fhir_user:
        fhir_user = fhir_user.rsplit("/", 2)[-2] + "/" + fhir_user.rsplit("/", 1)[-1]
    return AccessGrant(
        client_id=str(client_id),
        scopes=_scopes(claims),
        token_id=str(claims.get("jti") or digest(token)[:32]),
        expires_at=int(claims.get("exp", 0)),
        subject=str(sub) if sub is not None and sub != client_id else None,
        fhir_user=str(fhir_user) if fhir_user else None,
        patient=str(claims["patient"]) if claims.get("patient") else None,
        encounter=str(claims["encounter"]) if claims.get("encounter") else None,
        issuer=str(claims.get("iss")) if claims.get("iss") else None,
    )


class ExternalIssuer:
    def __init__(self, srv: AuthServer) -> None:
        self.srv = srv
        s = srv.settings
        self.issuer = s.external_issuer
        self.audience = s.external_audience or srv.urls.fhir_base

    @property
    def enabled(self) -> bool:
        s = self.srv.settings
        return bool(s.external_jwks_url or s.external_introspection_url)

    async def verify(self, token: str) -> tuple[dict[str, Any] | None, str]:
        s = self.srv.settings
        seen = peek(token)
        if seen is not None and s.external_jwks_url and seen.claims.get("iss") == self.issuer:
            alg = str(seen.header.get("alg"))
            if alg not in EXTERNAL_ALGS:
                return None, "algorithm not accepted"
            try:
                jwks = await self.srv.jwks_cache.get(s.external_jwks_url)
            except JwksError as exc:
                return None, str(exc)
            key = select_key(jwks, seen.header.get("kid"), alg)
            claims = verify_jws(token, key, alg) if key else None
            if claims is None:
                return None, "invalid signature"
        elif s.external_introspection_url:
            claims = await self._introspect(token)
            if claims is None:
                return None, "token is not active"
        else:
            return None, "token not issued by an accepted issuer"
        aud = claims.get("aud")
        if aud is not None and not (
            aud == self.audience or (isinstance(aud, list) and self.audience in aud)
        ):
            return None, "token audience is not this FHIR server"
        if self.issuer and claims.get("iss") not in (None, self.issuer):
            return None, "wrong issuer"
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            return None, "token expired"
        return claims, ""

    async def _introspect(self, token: str) -> dict[str, Any] | None:
        s = self.srv.settings
        headers = {"Accept": "application/json"}
        if s.external_client_id:
            pair = f"{quote(s.external_client_id)}:{quote(s.external_client_secret or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            async with httpx.AsyncClient(
                transport=self.srv.jwks_cache.transport, timeout=5.0
            ) as client:
                r = await client.post(
                    str(s.external_introspection_url),
                    data={"token": token},
                    headers=headers,
                )
            doc = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("active") is not True:
            return None
        return doc


def make_authenticator(srv: AuthServer) -> Authenticate:
    external = ExternalIssuer(srv)

    async def authenticate(authorization: str | None) -> AccessGrant:
        if authorization is None:
            raise unauthorized(None)
        token = bearer(authorization)
        if token is None:
            raise unauthorized("expected 'Authorization: Bearer <token>'")
        seen = peek(token)
        own = seen is not None and seen.claims.get("iss") == srv.urls.issuer
        if own or not external.enabled:
            claims, why = await srv.verify_access_token(token)
        else:
            claims, why = await external.verify(token)
        if claims is None:
            raise unauthorized(why)
        return grant_from_claims(claims, token)

    return authenticate


__all__ = ["bearer", "make_authenticator", "now", "unauthorized"]
