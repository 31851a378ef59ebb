"""GET/POST /auth/authorize: validate the request, then a login page, then a consent page, then a
redirect with a single-use code bound to client, redirect_uri, PKCE challenge, scopes, user and
launch context.

All three steps post to /auth/authorize; a hidden `txn` field names the pending authorization,
which is bound to a browser cookie and carries a CSRF token. Errors before the client and its
redirect_uri are known are shown as a page, never redirected.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fhir_server.auth.server import pages, scopeset
from fhir_server.auth.server.client_auth import single
from fhir_server.auth.server.core import AuthServer, digest, new_handle, now
from fhir_server.auth.server.errors import OAuthError
from fhir_server.auth.server.passwords import verify_password

COOKIE = "fhir_server_authz"
TXN_LIFETIME = 900
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_CONTEXT_SCOPES = ("launch", "launch/patient", "launch/encounter")

PatientExists = Callable[[str], Awaitable[bool]]
ListPatients = Callable[[], Awaitable[list[tuple[str, str]]]]


@dataclass
class Page:
    status: int
    html: str
    cookie: str | None = None  # value to set for COOKIE


@dataclass
class Redirect:
    location: str


def redirect_to(uri: str, params: dict[str, str]) -> Redirect:
    sep = "&" if "?" in uri else "?"
    return Redirect(f"{uri}{sep}{urlencode(params)}")


class _RedirectError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _filter_scopes(requested: list[str], allowed: list[str], ehr_launch: bool) -> list[str]:
    """The scopes the consent page may offer: known, permitted by registration, not system/."""
    out: list[str] = []
    for scope in dict.fromkeys(requested):
        if scope in scopeset.IDENTITY_SCOPES or scope == "offline_access":
            ok = True
        elif scope == "online_access" or scope == "launch":
            ok = ehr_launch
        elif scope == "launch/patient":
            ok = True
        elif scope == "launch/encounter":
            ok = ehr_launch
        else:
            parsed = scopeset.parse(scope)
            ok = parsed is not None and parsed.context in ("patient", "user")
        if ok and allowed:
            if scopeset.parse(scope) is None:
                ok = scope in allowed or scope in scopeset.IDENTITY_SCOPES
            elif not scopeset.covered(allowed, scope):
                # broader than the registration: offer the registered scopes it includes
                out.extend(x for x in scopeset.narrow(allowed, [scope]) if x not in out)
                ok = False
        if ok and scope not in out:
            out.append(scope)
    return out


async def start(
    srv: AuthServer, form: list[tuple[str, str]], cookie: str | None
) -> Page | Redirect:
    try:
        p = single(form)
    except OAuthError as exc:
        return Page(400, pages.error_page(exc.description))
    client_id = p.get("client_id")
    client = await srv.store.get_client(client_id) if client_id else None
    if client is None:
        return Page(400, pages.error_page("Unknown client_id."))
    redirect_uri = p.get("redirect_uri")
    if not redirect_uri or redirect_uri not in client.redirect_uris:
        return Page(
            400, pages.error_page("redirect_uri is missing or not registered for this app.")
        )
    state = p.get("state")
    base = {"state": state} if state is not None else {}
    try:
        if "authorization_code" not in client.grant_types:
            raise _RedirectError(
                "unauthorized_client", "this client may not use authorization_code"
            )
        if p.get("response_type") != "code":
            raise _RedirectError("unsupported_response_type", "response_type must be code")
        if not state:
            raise _RedirectError("invalid_request", "state is required")
        aud = p.get("aud", p.get("resource"))
        if aud != srv.urls.fhir_base:
            raise _RedirectError("invalid_request", "aud must be this server's FHIR base URL")
        if p.get("code_challenge_method") != "S256":
            raise _RedirectError("invalid_request", "code_challenge_method must be S256")
        challenge = p.get("code_challenge") or ""
        if not _CHALLENGE.match(challenge):
            raise _RedirectError("invalid_request", "code_challenge (S256) is required")
        launch_ctx: dict[str, Any] | None = None
        if p.get("launch"):
            launch_ctx = await srv.store.take_item("launch", digest(p["launch"]))
            if launch_ctx is None or launch_ctx.get("client_id") not in (None, client.client_id):
                raise _RedirectError(
                    "invalid_request", "launch is unknown, expired or already used"
                )
        requested = (p.get("scope") or "").split()
        scopes = _filter_scopes(requested, client.allowed_scopes(), launch_ctx is not None)
        if not [s for s in scopes if s not in _CONTEXT_SCOPES]:
            raise _RedirectError("invalid_scope", "none of the requested scopes can be granted")
    except _RedirectError as exc:
        return redirect_to(
            redirect_uri, {"error": exc.error, "error_description": exc.description, **base}
        )
    txn, csrf = new_handle(), new_handle()
    binding = cookie or new_handle()
    record = {
        "client_id": client.client_id,
        "client_name": client.client_name or client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "scopes": scopes,
        "nonce": p.get("nonce"),
        "launch": launch_ctx,
        "binding": digest(binding),
        "csrf": csrf,
        "user": None,
    }
    await srv.store.put_item("txn", digest(txn), record, now() + TXN_LIFETIME)
    name = client.client_name or client.client_id
    return Page(200, pages.login_page(txn, csrf, name), cookie=binding)


def _offered(record: dict[str, Any], fhir_user_type: str) -> list[str]:
    scopes: list[str] = record["scopes"]
    if fhir_user_type == "Patient":  # a patient's access is their own record
        scopes = [s for s in scopes if not s.startswith("user/")]
    return scopes


def _needs_picker(record: dict[str, Any], fhir_user_type: str, scopes: list[str]) -> bool:
    if fhir_user_type == "Patient" or (record.get("launch") or {}).get("patient"):
        return False
    return any(s == "launch/patient" or scopeset.is_patient_scope(s) for s in scopes)


async def _consent(
    srv: AuthServer,
    record: dict[str, Any],
    txn: str,
    list_patients: ListPatients,
    error: str | None = None,
    status: int = 200,
) -> Page:
    fhir_type = str(record["fhirUser"]).split("/", 1)[0]
    scopes = _offered(record, fhir_type)
    need = _needs_picker(record, fhir_type, scopes)
    patients = await list_patients() if need else None
    html = pages.consent_page(
        txn, record["csrf"], record["client_name"], record["user"], scopes, patients, need, error
    )
    return Page(status, html)


async def _rate_limited(srv: AuthServer, username: str, address: str) -> bool:
    since = now() - srv.settings.login_failure_window
    s = srv.settings
    return (
        await srv.store.count_failures(f"user:{username}", since) >= s.login_max_failures_per_user
        or await srv.store.count_failures(f"addr:{address}", since)
        >= s.login_max_failures_per_address
    )


async def step(
    srv: AuthServer,
    form: list[tuple[str, str]],
    cookie: str | None,
    address: str,
    patient_exists: PatientExists,
    list_patients: ListPatients,
) -> Page | Redirect:
    """A login or consent form submission (the form carries `txn` and `csrf_token`)."""
    fields: dict[str, list[str]] = {}
    for k, v in form:
        fields.setdefault(k, []).append(v)

    def one(name: str) -> str:
        values = fields.get(name) or [""]
        return values[0]

    txn = one("txn")
    key = digest(txn)
    record = await srv.store.get_item("txn", key) if txn else None
    if (
        record is None
        or cookie is None
        or not hmac.compare_digest(record["binding"], digest(cookie))
        or not hmac.compare_digest(record["csrf"], one("csrf_token"))
    ):
        return Page(
            400,
            pages.error_page(
                "This sign-in form has expired or was not sent by this browser. Start again from the app."
            ),
        )
    exp = now() + TXN_LIFETIME
    if record["user"] is None:
        username, password = one("username"), one("password")
        if await _rate_limited(srv, username, address):
            return Page(
                429,
                pages.login_page(
                    txn,
                    record["csrf"],
                    record["client_name"],
                    "Too many failed sign-ins. Try again later.",
                ),
            )
        user = await srv.store.get_user(username) if username else None
        if not verify_password(password, user.password_hash if user else None) or user is None:
            await srv.store.add_failure(f"user:{username}")
            await srv.store.add_failure(f"addr:{address}")
            return Page(
                401,
                pages.login_page(
                    txn, record["csrf"], record["client_name"], "Wrong username or password."
                ),
            )
        launch_user = (record.get("launch") or {}).get("user")
        if launch_user and launch_user not in (user.username, user.fhir_user):
            return Page(403, pages.error_page("This launch was created for another user."))
        record["user"], record["fhirUser"] = user.username, user.fhir_user
        record["csrf"] = new_handle()
        await srv.store.put_item("txn", key, record, exp)
        return await _consent(srv, record, txn, list_patients)

    # consent
    decision = one("decision")
    if decision not in ("allow", "deny"):
        return await _consent(srv, record, txn, list_patients, "Choose Allow or Deny.", 400)
    if await srv.store.take_item("txn", key) is None:  # claimed once, even if posted twice
        return Page(400, pages.error_page("This consent form was already submitted."))
    state_param = {"state": record["state"]}
    if decision == "deny":
        return redirect_to(
            record["redirect_uri"],
            {
                "error": "access_denied",
                "error_description": "the user denied access",
                **state_param,
            },
        )
    fhir_user: str = record["fhirUser"]
    fhir_type, fhir_id = fhir_user.split("/", 1)
    offered = _offered(record, fhir_type)
    allowed = set(offered) | {c for s in offered for c in scopeset.granular_choices(s)}
    chosen = [s for s in dict.fromkeys(fields.get("scope", [])) if s in allowed]
    launch = record.get("launch") or {}
    patient: str | None = launch.get("patient")
    if fhir_type == "Patient":
        patient = fhir_id
    elif patient is None and _needs_picker(record, fhir_type, chosen):
        patient = one("patient").strip()
        if not _ID.match(patient) or not await patient_exists(patient):
            await srv.store.put_item("txn", key, record, exp)
            return await _consent(
                srv, record, txn, list_patients, "Choose an existing patient.", 400
            )
    if any(scopeset.is_patient_scope(s) for s in chosen) and patient is None:
        chosen = [s for s in chosen if not scopeset.is_patient_scope(s)]
    if not [s for s in chosen if s not in _CONTEXT_SCOPES]:
        return redirect_to(
            record["redirect_uri"],
            {
                "error": "access_denied",
                "error_description": "no permission was granted",
                **state_param,
            },
        )
    with_patient = patient is not None and (
        "launch/patient" in chosen
        or "launch" in chosen
        or any(scopeset.is_patient_scope(s) for s in chosen)
    )
    grant: dict[str, Any] = {
        "client_id": record["client_id"],
        "scopes": chosen,
        "sub": record["user"],
        "fhirUser": fhir_user,
        "patient": patient if with_patient else None,
        "encounter": launch.get("encounter")
        if "launch" in chosen or "launch/encounter" in chosen
        else None,
        "fhirContext": launch.get("fhirContext"),
        "need_patient_banner": launch.get("need_patient_banner", True),
        "intent": launch.get("intent"),
        "nonce": record.get("nonce"),
    }
    code = secrets.token_urlsafe(32)
    data = {
        "client_id": record["client_id"],
        "redirect_uri": record["redirect_uri"],
        "code_challenge": record["code_challenge"],
        "grant": grant,
    }
    await srv.store.put_item("code", digest(code), data, now() + srv.settings.auth_code_lifetime)
    return redirect_to(record["redirect_uri"], {"code": code, **state_param})
