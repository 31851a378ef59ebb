"""SMART scope parsing, v1 and v2 (SMART.md 1.4 "v2 syntax", "v1 -> v2 mapping", "Invalid
requests"): pure functions."""

from __future__ import annotations

import pytest

from fhir_server.auth.scopes import (
    ResourceScope,
    interaction_letter,
    matching,
    parse_scope,
    parse_scopes,
    to_v2,
)


@pytest.mark.parametrize(
    ("text", "context", "rtype", "letters"),
    [
        ("patient/Observation.rs", "patient", "Observation", "rs"),
        ("user/*.cruds", "user", "*", "cruds"),
        ("system/Patient.r", "system", "Patient", "r"),
        ("patient/Condition.cud", "patient", "Condition", "cud"),
        ("user/Encounter.s", "user", "Encounter", "s"),
        ("system/*.c", "system", "*", "c"),
    ],
)
def test_v2_scopes(text: str, context: str, rtype: str, letters: str) -> None:
    """SMART.md 1.4 v2 syntax `(patient|user|system)/(Type|*).[c][r][u][d][s]`."""
    scope = parse_scope(text)
    assert scope == ResourceScope(context, rtype, frozenset(letters), (), False, text)  # type: ignore[arg-type]


@pytest.mark.parametrize(("v1", "letters"), [("read", "rs"), ("write", "cud"), ("*", "cruds")])
def test_v1_scopes_map_to_v2(v1: str, letters: str) -> None:
    """SMART.md 1.4 v1 -> v2 mapping: `.read`->`.rs`, `.write`->`.cud`, `.*`->`.cruds`; 2.28
    `patient/*.read` must work."""
    scope = parse_scope(f"patient/*.{v1}")
    assert scope is not None and scope.v1
    assert scope.letters == frozenset(letters)
    assert to_v2(f"patient/*.{v1}") == f"patient/*.{letters}"


@pytest.mark.parametrize(
    "text",
    ["patient/Observation.dus", "patient/Observation.rr", "patient/Observation.rx",
     "patient/Observation.", "doctor/Observation.rs", "patient/observation.rs",
     "patient/Observation.rs?", "patient/Observation.rs?category", "patient/Observation.rs?=x",
     "patient/Observation.READ", "Observation.rs", "patient/Observation"],
)  # fmt: skip
def test_malformed_scopes_grant_nothing(text: str) -> None:
    """SMART.md 1.4 "undefined or out-of-order letters (e.g. `.dus`) MAY be ignored"."""
    assert parse_scope(text) is None


def test_non_resource_scopes_are_skipped() -> None:
    """SMART.md 1.4 context and identity scopes (`launch/patient`, `openid fhirUser`,
    `offline_access`) are not resource scopes."""
    scopes = parse_scopes(["openid", "fhirUser", "launch/patient", "offline_access",
                           "launch", "online_access", "patient/Patient.rs"])  # fmt: skip
    assert [s.text for s in scopes] == ["patient/Patient.rs"]
    assert [s.text for s in parse_scopes(["openid patient/Patient.r user/*.rs"])] == [
        "patient/Patient.r", "user/*.rs"]  # fmt: skip


def test_granular_scope_query() -> None:
    """SMART.md 1.4 search-parameter restrictions
    (`patient/Observation.rs?category=http://...|laboratory`)."""
    text = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    scope = parse_scope(text)
    assert scope is not None
    assert scope.params == (
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),
    )
    assert scope.v2_text() == text
    two = parse_scope("user/Condition.rs?category=a|b&clinical-status=active")
    assert two is not None and two.params == (("category", "a|b"), ("clinical-status", "active"))


def test_matching() -> None:
    """SMART.md 1.4 wildcards: `*` covers every type."""
    scopes = parse_scopes(["patient/Observation.rs", "user/*.c", "patient/Condition.r"])
    assert [s.text for s in matching(scopes, "Observation", "s")] == ["patient/Observation.rs"]
    assert [s.text for s in matching(scopes, "Device", "c")] == ["user/*.c"]
    assert matching(scopes, "Condition", "s") == ()


@pytest.mark.parametrize(
    ("interaction", "letter"),
    [("read", "r"), ("vread", "r"), ("history-instance", "r"), ("search-type", "s"),
     ("search-system", "s"), ("history-type", "s"), ("history-system", "s"), ("create", "c"),
     ("update", "u"), ("patch", "u"), ("delete", "d")],
)  # fmt: skip
def test_interaction_letters(interaction: str, letter: str) -> None:
    """SMART.md 1.8 "Map the interaction to a letter"."""
    assert interaction_letter(interaction) == letter


def test_unknown_interaction() -> None:
    with pytest.raises(ValueError):
        interaction_letter("frobnicate")
