"""Registered clients and users, as the auth store keeps them."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

AUTH_METHODS = ("none", "client_secret_basic", "private_key_jwt")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
FHIR_USER_TYPES = ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person")
_FHIR_USER = re.compile(
    r"^(Patient|Practitioner|PractitionerRole|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$"
)
_USERNAME = re.compile(r"^[A-Za-z0-9_.@+\-]{1,128}$")


def secret_digest(secret: str) -> str:
    """Client secrets are 256-bit random values: one SHA-256 is enough to keep them unreadable."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Client:
    client_id: str
    client_name: str = ""
    token_endpoint_auth_method: str = "none"
    redirect_uris: list[str] = field(default_factory=list)
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code"])
    # Space-separated scopes the client may be granted ("" = whatever the user consents to, for
    # user-facing apps; system/ scopes always need registration).
    scope: str = ""
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    launch_uri: str | None = None
    client_secret_hash: str | None = None
    created_at: int = 0

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    def allowed_scopes(self) -> list[str]:
        return self.scope.split()

    def check_secret(self, secret: str) -> bool:
        if self.client_secret_hash is None:
            return False
        return hmac.compare_digest(self.client_secret_hash, secret_digest(secret))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Client:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})

    def public_json(self) -> dict[str, Any]:
        """The client as shown to people (CLI, registration): no secret material."""
        out = {
            k: v for k, v in self.to_json().items() if k != "client_secret_hash" and v is not None
        }
        out["client_id_issued_at"] = out.pop("created_at")
        return out


@dataclass
class User:
    username: str
    password_hash: str
    fhir_user: str  # "Patient/123", "Practitioner/abc", ...
    created_at: int = 0

    @property
    def fhir_user_type(self) -> str:
        return self.fhir_user.split("/", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> User:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})

    def public_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "fhirUser": self.fhir_user,
            "created_at": self.created_at,
        }


def valid_fhir_user(ref: str) -> bool:
    return bool(_FHIR_USER.match(ref))


def valid_username(name: str) -> bool:
    return bool(_USERNAME.match(name))
