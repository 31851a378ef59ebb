"""What the authorization server needs to know about scope strings (pure functions): which
requested scopes a client's registration covers, which granular choices the consent page offers.
Enforcement on FHIR interactions has its own parser (fhir_server/auth/scopes.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RESOURCE = re.compile(
    r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)(\?[^\s]+)?$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
IDENTITY_SCOPES = ("openid", "fhirUser", "profile")
REFRESH_SCOPES = ("offline_access", "online_access")

OBSERVATION_CATEGORIES = (
    "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
    "http://terminology.hl7.org/CodeSystem/observation-category|social-history",
    "http://terminology.hl7.org/CodeSystem/observation-category|survey",
    "http://terminology.hl7.org/CodeSystem/observation-category|exam",
    "http://terminology.hl7.org/CodeSystem/observation-category|imaging",
    "http://terminology.hl7.org/CodeSystem/observation-category|procedure",
    "http://terminology.hl7.org/CodeSystem/observation-category|therapy",
    "http://terminology.hl7.org/CodeSystem/observation-category|activity",
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|clinical-test",
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh",
)
CONDITION_CATEGORIES = (
    "http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
    "http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis",
    "http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
)
GRANULAR = {"Observation": OBSERVATION_CATEGORIES, "Condition": CONDITION_CATEGORIES}


@dataclass(frozen=True)
class ResourceScope:
    context: str  # patient | user | system
    type: str  # a resource type or "*"
    letters: str  # v2 letters in canonical order
    query: str  # "" or "?param=value..."

    @property
    def v2(self) -> str:
        return f"{self.context}/{self.type}.{self.letters}{self.query}"


def parse(scope: str) -> ResourceScope | None:
    m = _RESOURCE.match(scope)
    if m is None or not m.group(3):
        return None
    letters = _V1.get(m.group(3), m.group(3))
    return ResourceScope(m.group(1), m.group(2), letters, m.group(4) or "")


def covers(allowed: str, requested: str) -> bool:
    """True when a client registered for `allowed` may be granted `requested`."""
    if allowed == requested:
        return True
    a, r = parse(allowed), parse(requested)
    if a is None or r is None or a.context != r.context:
        return False
    if a.type not in ("*", r.type):
        return False
    if not set(r.letters) <= set(a.letters):
        return False
    return a.query in ("", r.query)


def covered(allowed: list[str], requested: str) -> bool:
    return any(covers(a, requested) for a in allowed)


def granular_choices(scope: str) -> list[str]:
    """Category-restricted variants of a resource-level Observation or Condition scope."""
    s = parse(scope)
    if s is None or s.query or s.type not in GRANULAR:
        return []
    letters = "".join(ch for ch in s.letters if ch in "rs") or s.letters
    return [f"{s.context}/{s.type}.{letters}?category={c}" for c in GRANULAR[s.type]]


def allows_introspection(scopes: list[str] | tuple[str, ...]) -> bool:
    """A bearer token may introspect when it carries system/*.rs (v1: system/*.read) or broader."""
    for scope in scopes:
        s = parse(scope)
        if (
            s
            and s.context == "system"
            and s.type == "*"
            and not s.query
            and {"r", "s"} <= set(s.letters)
        ):
            return True
    return False


def is_patient_scope(scope: str) -> bool:
    return scope.startswith("patient/")
