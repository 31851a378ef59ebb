"""Authenticating the client at /auth/token, /auth/introspect and /auth/revoke: public (client_id
in the body), client_secret_basic (RFC 6749 §2.3.1) and private_key_jwt (RFC 7523 with SMART's
rules: RS384/ES384 only, exp at most 5 minutes ahead, jti replay rejected, jku only when it is
the registered JWKS URL, exactly one key matching kid and kty)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from fhir_server.auth.server.core import AuthServer, JwksError, now, peek, select_key, verify_jws
from fhir_server.auth.server.errors import OAuthError, invalid_client, invalid_request
from fhir_server.auth.server.models import Client

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 60


def single(form: list[tuple[str, str]]) -> dict[str, str]:
    """Form parameters as a dict; a repeated parameter is an error (RFC 6749 §3.1)."""
    out: dict[str, str] = {}
    for k, v in form:
        if k in out:
            raise invalid_request(f"parameter {k!r} is repeated")
        out[k] = v
    return out


def _basic(authorization: str) -> tuple[str, str] | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("malformed Basic credentials", basic=True) from None
    cid, sep, secret = raw.partition(":")
    if not sep:
        raise invalid_client("malformed Basic credentials", basic=True)
    return unquote(cid), unquote(secret)


async def verify_assertion(srv: AuthServer, assertion: str) -> Client:
    seen = peek(assertion)
    if seen is None:
        raise invalid_client("client_assertion is not a signed JWT")
    header, claims = seen.header, seen.claims
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise invalid_client("client_assertion must be signed with RS384 or ES384")
    if not header.get("kid"):
        raise invalid_client("client_assertion header has no kid")
    if str(header.get("typ", "")).upper() != "JWT":
        raise invalid_client("client_assertion header typ must be JWT")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        raise invalid_client("client_assertion has no iss")
    client = await srv.store.get_client(iss)
    if client is None or client.token_endpoint_auth_method != "private_key_jwt":
        raise invalid_client("unknown client or not registered for private_key_jwt")
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_uri:
        raise invalid_client("jku is not the client's registered JWKS URL")
    if client.jwks is not None:
        jwks = client.jwks
    elif client.jwks_uri:
        try:
            jwks = await srv.jwks_cache.get(client.jwks_uri)
        except JwksError as exc:
            raise invalid_client(str(exc)) from None
    else:
        raise invalid_client("the client has no registered keys")
    key = select_key(jwks, str(header["kid"]), str(alg))
    if key is None:
        raise invalid_client("no single registered key matches the assertion's kid and alg")
    verified = verify_jws(assertion, key, str(alg))
    if verified is None:
        raise invalid_client("client_assertion signature is invalid")
    claims = verified
    if claims.get("sub") != iss:
        raise invalid_client("client_assertion sub must equal iss")
    aud = claims.get("aud")
    token_url = srv.urls.auth("token")
    if not (aud == token_url or (isinstance(aud, list) and token_url in aud)):
        raise invalid_client("client_assertion aud must be the token endpoint URL")
    t = now()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise invalid_client("client_assertion has no exp")
    if exp < t - LEEWAY:
        raise invalid_client("client_assertion has expired")
    if exp > t + MAX_ASSERTION_LIFETIME:  # the cap itself gets no leeway
        raise invalid_client("client_assertion exp is more than 5 minutes ahead")
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float) or value > t + LEEWAY):
            raise invalid_client(f"client_assertion {name} is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise invalid_client("client_assertion has no jti")
    if not await srv.store.remember_jti(iss, jti, int(exp) + LEEWAY):
        raise invalid_client("client_assertion jti was already used")
    return client


async def authenticate_client(
    srv: AuthServer, params: dict[str, str], authorization: str | None, *, allow_public: bool = True
) -> Client:
    """The calling client, authenticated by whichever method it used; OAuthError otherwise."""
    basic = _basic(authorization) if authorization else None
    assertion_type = params.get("client_assertion_type")
    assertion = params.get("client_assertion")
    body_id = params.get("client_id")
    if basic is not None:
        if assertion_type or assertion:
            raise invalid_request("use one client authentication method")
        cid, secret = basic
        if body_id is not None and body_id != cid:
            raise invalid_request("client_id does not match the Basic credentials")
        client = await srv.store.get_client(cid)
        if (
            client is None
            or client.token_endpoint_auth_method != "client_secret_basic"
            or not client.check_secret(secret)
        ):
            raise invalid_client("client authentication failed", basic=True)
        return client
    if assertion_type is not None or assertion is not None:
        if assertion_type != JWT_BEARER:
            raise invalid_client("unsupported client_assertion_type")
        if not assertion:
            raise invalid_client("client_assertion is missing")
        client = await verify_assertion(srv, assertion)
        if body_id is not None and body_id != client.client_id:
            raise invalid_client("client_id does not match the assertion")
        return client
    if body_id is None:
        raise invalid_client("client authentication required")
    client = await srv.store.get_client(body_id)
    if client is None:
        raise invalid_client("unknown client")
    if not client.is_public or not allow_public:
        raise invalid_client(
            "this client must authenticate",
            basic=client.token_endpoint_auth_method == "client_secret_basic",
        )
    return client


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description)
