"""/auth/introspect (RFC 7662), /auth/revoke (RFC 7009), /auth/register (RFC 7591) and
/auth/launch (EHR launch contexts created by an EHR's Backend Services client)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fhir_server.auth.server import scopeset
from fhir_server.auth.server.client_auth import authenticate_client, single
from fhir_server.auth.server.clients import InvalidMetadata, client_document, new_client
from fhir_server.auth.server.core import AuthServer, digest, new_handle, now, peek
from fhir_server.auth.server.errors import OAuthError, invalid_client, invalid_request
from fhir_server.auth.server.resource import bearer

LAUNCH_LIFETIME = 300
LAUNCH_SCOPE = "system/launch"
INSUFFICIENT_SCOPE = {"WWW-Authenticate": 'Bearer realm="fhir-server", error="insufficient_scope"'}
# Launch context of a token response that introspection echoes besides patient and encounter.
LAUNCH_CONTEXT = ("fhirContext", "need_patient_banner", "smart_style_url", "intent", "tenant")


async def _bearer_claims(srv: AuthServer, authorization: str | None) -> dict[str, Any] | None:
    token = bearer(authorization)
    if token is None:
        return None
    claims, _ = await srv.verify_access_token(token)
    if claims is None:
        raise OAuthError(
            "invalid_token",
            "the bearer token is invalid",
            status=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return claims


async def introspect(
    srv: AuthServer, form: list[tuple[str, str]], authorization: str | None
) -> dict[str, Any]:
    p = single(form)
    caller = await _bearer_claims(srv, authorization)
    if caller is not None:
        if not scopeset.allows_introspection(str(caller.get("scope", "")).split()):
            raise OAuthError(
                "insufficient_scope",
                "introspection needs system/*.rs or broader",
                status=403,
                headers=dict(INSUFFICIENT_SCOPE),
            )
    else:
        await authenticate_client(srv, p, authorization, allow_public=False)
    token = p.get("token")
    if not token:
        raise invalid_request("token is required")
    claims, _ = await srv.verify_access_token(token)
    if claims is not None:
        out: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        for name in (
            "scope",
            "client_id",
            "exp",
            "iat",
            "iss",
            "sub",
            "aud",
            "patient",
            "encounter",
            "fhirUser",
            *LAUNCH_CONTEXT,
        ):
            if name in claims:
                out[name] = claims[name]
        if "fhirUser" in out:
            out["fhirUser"] = f"{srv.urls.fhir_base}/{out['fhirUser']}"
        return out
    if peek(token) is None:
        record = await srv.store.get_refresh(digest(token))
        if record is not None and not record.rotated and record.expires_at > now():
            grant = record.data
            out = {
                "active": True,
                "token_type": "refresh_token",
                "scope": " ".join(grant["scopes"]),
                "client_id": grant["client_id"],
                "exp": record.expires_at,
                "iss": srv.urls.issuer,
            }
            if grant.get("sub"):
                out["sub"] = grant["sub"]
            for name in ("patient", "encounter", "fhirContext", "intent", "tenant"):
                if grant.get(name):
                    out[name] = grant[name]
            if grant.get("patient"):
                out["need_patient_banner"] = bool(grant.get("need_patient_banner", True))
                out["smart_style_url"] = srv.urls.auth("smart-style.json")
            return out
    return {"active": False}


def _not_yours() -> OAuthError:
    # RFC 7009 §2.1: a token issued to another client is refused and the client informed.
    return OAuthError("unauthorized_client", "the token was issued to another client")


async def revoke(srv: AuthServer, form: list[tuple[str, str]], authorization: str | None) -> None:
    """Revoking either token of a grant ends the whole grant (RFC 7009 §2.1 allows it). An
    unknown, expired or already revoked token answers 200 (§2.2); a live token of another
    client is refused (400 unauthorized_client) and left alone."""
    p = single(form)
    client = await authenticate_client(srv, p, authorization)
    token = p.get("token")
    if not token:
        raise invalid_request("token is required")
    seen = peek(token)
    if seen is not None:
        claims, _ = await srv.verify_access_token(token)
        if claims is None:
            return
        if claims.get("client_id") != client.client_id:
            raise _not_yours()
        family = await srv.store.revoke_access(str(claims["jti"]))
        if family:
            await srv.store.revoke_family(family)
        return
    record = await srv.store.get_refresh(digest(token))
    if record is None or record.expires_at <= now():
        return
    if record.data.get("client_id") != client.client_id:
        raise _not_yours()
    await srv.store.revoke_family(record.family)


async def register(srv: AuthServer, body: Any, authorization: str | None) -> dict[str, Any]:
    expected = srv.settings.registration_token
    token = bearer(authorization)
    if not expected or token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise OAuthError(
            "invalid_token",
            "registration requires the registration token as a bearer token",
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="fhir-server"'},
        )
    if not isinstance(body, dict):
        raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
    meta = dict(body)
    meta.pop("client_id", None)  # the server assigns it
    try:
        client, secret = new_client(meta)
    except InvalidMetadata as exc:
        raise OAuthError(exc.error, str(exc)) from None
    await srv.store.put_client(client)
    return client_document(client, secret)


async def create_launch(
    srv: AuthServer,
    params: dict[str, Any],
    authorization: str | None,
    patient_exists: Any,
    *,
    encounter_subject: Callable[[str], Awaitable[str | None]] | None = None,
) -> dict[str, Any]:
    """A launch context. An encounter that exists must belong to the patient given (400
    otherwise); one that does not exist (yet) is accepted, as the EHR may sync it later."""
    claims = await _bearer_claims(srv, authorization)
    if claims is None:
        raise OAuthError(
            "invalid_token",
            "an access token with scope system/launch is required",
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="fhir-server"'},
        )
    if LAUNCH_SCOPE not in str(claims.get("scope", "")).split():
        raise OAuthError(
            "insufficient_scope",
            "the token lacks scope system/launch",
            status=403,
            headers=dict(INSUFFICIENT_SCOPE),
        )
    client_id = params.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise invalid_request("client_id (the app to launch) is required")
    app = await srv.store.get_client(client_id)
    if app is None:
        raise invalid_client("unknown client_id")
    ctx: dict[str, Any] = {"client_id": client_id, "created_by": claims.get("client_id")}
    for name in ("patient", "encounter", "user", "intent"):
        value = params.get(name)
        if value is not None:
            if not isinstance(value, str) or not value or len(value) > 128:
                raise invalid_request(f"{name} must be a non-empty string")
            ctx[name] = value
    if "patient" in ctx and not await patient_exists(ctx["patient"]):
        raise invalid_request("no such Patient")
    if "patient" in ctx and "encounter" in ctx and encounter_subject is not None:
        subject = await encounter_subject(ctx["encounter"])
        parts = (subject or "").rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] != ctx["patient"]:
            raise invalid_request("the encounter belongs to another patient")
    fhir_context = params.get("fhirContext")
    if fhir_context is not None:
        if not isinstance(fhir_context, list) or not all(
            isinstance(item, dict)
            and any(
                isinstance(item.get(k), str | dict)
                for k in ("reference", "canonical", "identifier")
            )
            for item in fhir_context
        ):
            raise invalid_request(
                "fhirContext must be an array of objects with reference, canonical or identifier"
            )
        ctx["fhirContext"] = fhir_context
    if isinstance(params.get("need_patient_banner"), bool):
        ctx["need_patient_banner"] = params["need_patient_banner"]
    launch = new_handle()
    await srv.store.put_item("launch", digest(launch), ctx, now() + LAUNCH_LIFETIME)
    out: dict[str, Any] = {
        "launch": launch,
        "iss": srv.urls.fhir_base,
        "expires_in": LAUNCH_LIFETIME,
    }
    if app.launch_uri:
        sep = "&" if "?" in app.launch_uri else "?"
        out["launch_url"] = (
            f"{app.launch_uri}{sep}{urlencode({'iss': srv.urls.fhir_base, 'launch': launch})}"
        )
    else:
        out["launch_url"] = None
    return out
