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


def intersect(allowed: str, requested: str) -> str | None:
    """The part of resource scope `requested` that registered scope `allowed` permits, as a scope
    string (`system/*.cruds` within `system/*.rs` is `system/*.rs`; `system/*.read` within
    `system/Patient.rs` is `system/Patient.rs`), or None when they share nothing. Two different
    granular queries share nothing (conservative)."""
    if covers(allowed, requested):
        return requested
    a, r = parse(allowed), parse(requested)
    if a is None or r is None or a.context != r.context:
        return None
    if a.type != "*" and r.type != "*" and a.type != r.type:
        return None
    if a.query and r.query and a.query != r.query:
        return None
    letters = "".join(ch for ch in "cruds" if ch in a.letters and ch in r.letters)
    if not letters:
        return None
    out = ResourceScope(a.context, r.type if a.type == "*" else a.type, letters, r.query or a.query)
    return allowed if out.v2 == a.v2 else out.v2


def narrow(allowed: list[str], requested: list[str]) -> list[str]:
    """The requested scopes limited to what a client was registered for (SMART Backend Services:
    the server SHALL limit the requested scope to what the client was pre-authorized for): a
    scope the registration covers is kept as requested, a broader resource scope is replaced by
    its intersections with the registered ones, other scopes are kept only when registered."""
    out: list[str] = []
    for scope in requested:
        if parse(scope) is None:
            found = [scope] if scope in allowed else []
        else:
            found = [x for a in allowed if (x := intersect(a, scope)) is not None]
        out.extend(x for x in found if x not in out)
    return out


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
