"""The oracle itself, on hand-checked cases of the R4 search rules (no server involved)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fhir_server.fhir.searchparams import SearchParamRegistry
from tests.search import reference as ref

REGISTRY = SearchParamRegistry.load_default()
H = 3_600_000_000  # an hour in µs


def test_date_ranges_follow_precision_and_zone() -> None:
    day = ref.date_range("2024-03-01")
    assert day[1] - day[0] == 24 * H
    assert ref.date_range("2024-03") == (day[0], ref.date_range("2024-04")[0])
    assert ref.date_range("2024-02")[1] - ref.date_range("2024-02")[0] == 29 * 24 * H
    assert ref.date_range("2024-03-01T23:30:00-05:00")[0] == day[0] + 28 * H + H // 2
    low, high = ref.date_range("2024-03-01T10:00:00.5Z")
    assert high - low == 100_000  # a tenth of a second
    assert ref.date_range("2024-03-01T10:00:00") == ref.date_range("2024-03-01T10:00:00Z")


# stored, search -> the prefixes that match (R4 prefix table, range column)
DATE_CASES = [
    ("2024-03-01", "2024-03", {"eq", "ge", "le"}),
    ("2024", "2024-03", {"ne", "gt", "lt", "ge", "le"}),
    ("2024-03", "2024-03", {"eq", "ge", "le"}),
    ("2024-04-01", "2024-03", {"ne", "gt", "ge", "sa"}),
    ("2024-02-29", "2024-03", {"ne", "lt", "le", "eb"}),
    ("2024-03-01T23:30:00-05:00", "2024-03-01", {"ne", "gt", "ge", "sa"}),
    ("2024-03-02T00:30:00+02:00", "2024-03-01", {"eq", "ge", "le"}),
]


@pytest.mark.parametrize(("stored", "search", "expected"), DATE_CASES)
def test_date_prefixes(stored: str, search: str, expected: set[str]) -> None:
    got = {p for p in ref.PREFIXES if ref.date_matches(("dateTime", stored), p + search)}
    assert got == expected


def test_period_ends_open_where_absent() -> None:
    ongoing = ("Period", {"start": "2024-03-01"})
    assert ref.date_matches(ongoing, "gt2030")
    assert not ref.date_matches(ongoing, "2024-03-01")  # not contained: it never ends
    assert ref.date_matches(("Period", {"end": "2024-03-01"}), "lt1900")


# stored, search -> the prefixes that match (number section; sa/eb from the range column)
NUMBER_CASES = [
    ("100", "100", {"eq", "ge", "le"}),
    ("99.5", "100", {"eq", "lt", "le"}),
    ("100.5", "100", {"ne", "gt", "ge", "sa"}),
    ("100.2", "100", {"eq", "gt", "ge"}),
    ("99.4", "100", {"ne", "lt", "le", "eb"}),
    ("99.96", "100.0", {"eq", "lt", "le"}),
    ("99.94", "100.0", {"ne", "lt", "le", "eb"}),
]


@pytest.mark.parametrize(("stored", "search", "expected"), NUMBER_CASES)
def test_number_prefixes(stored: str, search: str, expected: set[str]) -> None:
    got = {p for p in ref.PREFIXES if ref.number_matches(Decimal(stored), p, search)}
    assert got == expected


def test_quantity_units() -> None:
    q = (
        "Quantity",
        {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    )
    assert ref.quantity_matches(q, "70")
    assert ref.quantity_matches(q, "70|http://unitsofmeasure.org|kg")
    assert ref.quantity_matches(q, "70||kg")
    assert not ref.quantity_matches(q, "70|http://example.org|kg")
    assert not ref.quantity_matches(("Quantity", {"value": 70, "unit": "kg"}), "70|http://u|kg")


def _obs(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o", "status": "final", **fields}


def test_tokens() -> None:
    code = {
        "coding": [
            {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
            {"code": "x1"},
        ]
    }
    obs = _obs(code=code)
    yes = ["8867-4", "http://loinc.org|8867-4", "|x1", "http://loinc.org|", "nope,x1"]
    no = ["|8867-4", "http://snomed.info/sct|8867-4", "http://loinc.org|x1", "8867"]
    assert all(ref.param_matches(REGISTRY, obs, "code", q) for q in yes)
    assert not any(ref.param_matches(REGISTRY, obs, "code", q) for q in no)
    assert ref.param_matches(REGISTRY, obs, "code:text", "HEART")
    assert not ref.param_matches(REGISTRY, obs, "code:text", "rate")
    assert not ref.param_matches(REGISTRY, obs, "code:not", "x1")
    assert ref.param_matches(REGISTRY, obs, "category:not", "vital-signs")  # no category
    assert ref.param_matches(REGISTRY, obs, "category:missing", "true")


def test_strings() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": "Müller", "given": ["Zoë"]}],
    }
    for key, value, expected in [
        ("family", "mu", True),
        ("family", "MÜL", True),
        ("family", "ller", False),
        ("family:contains", "LL", True),
        ("family:exact", "Müller", True),
        ("family:exact", "Muller", False),
        ("name", "zoe", True),
        ("given", "mu", False),
    ]:
        assert ref.param_matches(REGISTRY, patient, key, value) is expected, (key, value)


def test_references() -> None:
    to_group = _obs(subject={"reference": "Group/p2"})
    assert ref.param_matches(REGISTRY, to_group, "subject", "p2")
    assert ref.param_matches(REGISTRY, to_group, "subject", "Group/p2")
    assert not ref.param_matches(REGISTRY, to_group, "subject", "Patient/p2")
    assert not ref.param_matches(REGISTRY, to_group, "subject:Patient", "p2")
    assert not ref.param_matches(REGISTRY, to_group, "patient", "p2")
    assert ref.param_matches(REGISTRY, to_group, "patient:missing", "true")
