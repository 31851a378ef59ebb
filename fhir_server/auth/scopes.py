"""SMART resource scopes, v1 and v2, as values: pure parsing and matching, no I/O.

Syntax (SMART App Launch 2.2, scopes-and-launch-context.html)::

    (patient|user|system) "/" (ResourceType|"*") "." permissions [ "?" param=value ("&" ...)* ]

v2 permissions are the letters ``c r u d s`` in that order, each at most once (``rs``, ``cruds``,
``cud``). v1 permissions are ``read``, ``write`` and ``*`` and are mapped to v2 semantics:
``read`` -> ``rs``, ``write`` -> ``cud``, ``*`` -> ``cruds``. A scope that is not a resource scope
(``openid``, ``launch/patient``, ``offline_access``) or is malformed (``.dus``, ``.rx``, an empty
query) parses to None and grants nothing: the spec lets servers ignore such scopes.

Which interaction needs which letter: read, vread and instance history -> ``r``; type and system
search (GET or POST ``_search``) and type and system history -> ``s``; create -> ``c``; update and
patch (update-as-create included) -> ``u``; delete -> ``d``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
Letter = Literal["c", "r", "u", "d", "s"]

LETTERS: tuple[Letter, ...] = ("c", "r", "u", "d", "s")
V1_PERMISSIONS: dict[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}

_SCOPE_RE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<perms>[a-z]+|\*)(?:\?(?P<query>.*))?$"
)
_V2_RE = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource scope, in v2 terms whatever its syntax."""

    context: Context
    resource_type: str  # a resource type, or "*" for every type (also ones added later)
    letters: frozenset[str]  # subset of LETTERS
    params: tuple[tuple[str, str], ...] = ()  # granular restriction (`?category=...`), ANDed
    v1: bool = False  # written with v1 permissions (read/write/*)
    text: str = ""  # the scope as granted

    def covers(self, resource_type: str, letter: str) -> bool:
        """Whether this scope grants `letter` on `resource_type` (restrictions aside)."""
        return letter in self.letters and self.resource_type in ("*", resource_type)

    def v2_text(self) -> str:
        """The same scope in v2 syntax (`patient/Observation.read` -> `patient/Observation.rs`)."""
        perms = "".join(x for x in LETTERS if x in self.letters)
        out = f"{self.context}/{self.resource_type}.{perms}"
        if self.params:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.params)
        return out


def _permissions(perms: str) -> tuple[frozenset[str], bool] | None:
    """(the v2 letters, whether the text was v1) or None when the permissions are malformed."""
    if perms in V1_PERMISSIONS:
        return frozenset(V1_PERMISSIONS[perms]), True
    if not perms or not _V2_RE.match(perms):
        return None  # undefined letters, repeated or out-of-order letters (".dus", ".rr")
    return frozenset(perms), False


def _query(text: str | None) -> tuple[tuple[str, str], ...] | None:
    """The granular query's parameters; None when it is present but malformed."""
    if text is None:
        return ()
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    if not pairs or any(not k or not v for k, v in pairs):
        return None
    return tuple(pairs)


def parse_scope(text: str) -> ResourceScope | None:
    """A resource scope, or None for other scopes (openid, launch/...) and malformed ones."""
    m = _SCOPE_RE.match(text.strip())
    if m is None:
        return None
    perms = _permissions(m.group("perms"))
    params = _query(m.group("query"))
    if perms is None or params is None:
        return None
    letters, v1 = perms
    context: Context = m.group("context")  # type: ignore[assignment]
    return ResourceScope(context, m.group("type"), letters, params, v1, text.strip())


def parse_scopes(texts: Iterable[str]) -> tuple[ResourceScope, ...]:
    """Every resource scope among `texts` (a granted scope list or a space-separated string's
    parts); the others are skipped."""
    out: list[ResourceScope] = []
    for text in texts:
        for part in text.split():
            scope = parse_scope(part)
            if scope is not None:
                out.append(scope)
    return tuple(out)


def matching(
    scopes: Iterable[ResourceScope], resource_type: str, letter: str
) -> tuple[ResourceScope, ...]:
    """The scopes that grant `letter` on `resource_type`."""
    return tuple(s for s in scopes if s.covers(resource_type, letter))


def to_v2(text: str) -> str:
    """A scope string in v2 syntax; non-resource and malformed scopes are returned unchanged."""
    scope = parse_scope(text)
    return scope.v2_text() if scope is not None else text


def interaction_letter(interaction: str) -> Letter:
    """The permission letter an interaction needs (FHIR interaction codes as in the
    CapabilityStatement: read, vread, history-instance, search-type, search-system,
    history-type, history-system, create, update, patch, delete)."""
    letter = _INTERACTIONS.get(interaction)
    if letter is None:
        raise ValueError(f"unknown interaction {interaction!r}")
    return letter


_INTERACTIONS: dict[str, Letter] = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "search-system": "s",
    "search-compartment": "s",
    "history-type": "s",
    "history-system": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}
