"""What an accepted access token grants: the one value that flows from authentication (who is
asking, with which scopes and launch context) to the authorization decision point.

Built from a token by the authenticator (own tokens or an external issuer's) and consumed by
enforcement; neither side needs to know how the other works.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AccessGrant:
    client_id: str
    scopes: tuple[str, ...]  # the scope strings as granted, e.g. "patient/Observation.rs"
    token_id: str  # jti of the access token (revocation, audit)
    expires_at: int  # epoch seconds
    subject: str | None = None  # the user (sub), None for Backend Services
    fhir_user: str | None = None  # "Practitioner/123", "Patient/7", ...
    patient: str | None = None  # launch context: the patient in context (id only)
    encounter: str | None = None  # launch context: the encounter in context (id only)
    issuer: str | None = None  # who issued the token (own issuer or an external one)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


# Turns the Authorization header (None when absent) into a grant, or raises errors.Unauthorized
# (401 with WWW-Authenticate). Services.authenticate holds one when settings.auth is "on".
Authenticate = Callable[[str | None], Awaitable[AccessGrant]]
