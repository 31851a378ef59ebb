"""Every value of the pools against every search value: a fixed world, exhaustive queries.

Random sampling rarely meets a given boundary (a stored `70.5` searched as `70`, a stored
`2024` searched as `gt2024`); this grid does, deterministically. One fixed world holds every
pool value once (dates of every precision and zone, Periods open at either end, each amount in
each unit, each name, identifier and class); each test runs every query of one parameter — each
prefix with each search value, each token form, each string modifier, `:missing` — and compares
the ids with the reference evaluator, listing every disagreement at once.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from fhir_server.fhir.searchparams import SearchParamRegistry
from tests.search import reference
from tests.search.conftest import BASE, Server
from tests.search.pools import (
    AMOUNTS,
    BIRTHDATES,
    CATEGORIES,
    CLASSES,
    CODINGS,
    DATETIMES,
    ENC_STATUS,
    FAMILIES,
    GENDERS,
    GIVENS,
    IDENTIFIERS,
    NAME_QUERIES,
    OBS_STATUS,
    REF_QUERIES,
    SEARCH_AMOUNTS,
    SEARCH_BIRTHDATES,
    SEARCH_DATES,
    SUBJECT_REFS,
    TEXT_QUERIES,
    UCUM,
    UNIT_QUERIES,
    UNITS,
    V2_0203,
)

# On every storage engine (tests/storage/engines.py).
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.all_engines]

REGISTRY = SearchParamRegistry.load_default()
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
PERIODS: list[dict[str, str]] = [
    {"start": "2024-03-01T10:00:00Z", "end": "2024-03-01T11:00:00Z"},
    {"start": "2024-03-01"},
    {"end": "2024-03-01T23:30:00-05:00"},
    {"start": "2024-02-29", "end": "2024-03-02"},
    {"start": "2023-12-31T23:00:00-02:00", "end": "2024-01-01"},
    {"start": "2024", "end": "2024"},
    {"start": "2024-03", "end": "2024-04-01T00:00:00.500Z"},
]


def _coding(system: str | None, code: str, display: str | None) -> dict[str, str]:
    out = {"code": code}
    out.update({k: v for k, v in (("system", system), ("display", display)) if v})
    return out


def _concept(i: int, pool: list[tuple[str | None, str, str | None]]) -> dict[str, Any]:
    """Codings i and i+1 of the pool (every pair of neighbours), with a text every third."""
    out: dict[str, Any] = {"coding": [_coding(*pool[i % len(pool)])]}
    if i % 2:
        out["coding"].append(_coding(*pool[(i + 1) % len(pool)]))
    if i % 3 == 0:
        out["text"] = ["Héart Rate", "BLOOD pressure", "Pulse"][i % 9 // 3]
    return out


def _quantity(amount: float, unit: tuple[str | None, str | None, str | None]) -> dict[str, Any]:
    system, code, human = unit
    out: dict[str, Any] = {"value": amount}
    out.update({k: v for k, v in (("unit", human), ("system", system), ("code", code)) if v})
    return out


def _observations() -> list[dict[str, Any]]:
    effective: list[tuple[str, Any]] = [("effectiveDateTime", d) for d in DATETIMES]
    effective += [("effectivePeriod", p) for p in PERIODS]
    effective += [("effectiveInstant", "2024-03-01T10:00:00.123Z"), ("", None)]
    values = [_quantity(a, u) for a in AMOUNTS for u in UNITS]
    out = []
    for i in range(max(len(effective), len(values))):
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": OBS_STATUS[i % len(OBS_STATUS)],
            "code": _concept(i, CODINGS),
        }
        if i % 4:
            obs["category"] = [_concept(i, CATEGORIES)]
        if i % 6:
            obs["subject"] = {"reference": SUBJECT_REFS[i % len(SUBJECT_REFS)]}
        if i % 3 == 1:
            obs["encounter"] = {"reference": f"Encounter/e{i % 4}"}
        if i < len(effective) and effective[i][0]:
            obs[effective[i][0]] = effective[i][1]
        if i < len(values):
            obs["valueQuantity"] = values[i]
        if i == 1:
            obs["code"] = {"text": "Free text only"}  # no coding
        if i % 5 == 0:
            obs["component"] = [{"code": _concept(i + 2, CODINGS), "valueQuantity": values[0]}]
        out.append(obs)
    return out


def _patients() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, family in enumerate(FAMILIES):
        name: dict[str, Any] = {"family": family, "given": [GIVENS[i % len(GIVENS)]]}
        if i % 3 == 0:
            name["prefix"] = ["Dr."]
        out.append({"resourceType": "Patient", "id": f"n{i}", "name": [name]})
    out.append({"resourceType": "Patient", "id": "n-given", "name": [{"given": GIVENS[:3]}]})
    out.append(
        {"resourceType": "Patient", "id": "n-two", "name": [{"family": "Zoë"}, {"given": ["Jo"]}]}
    )
    out.append(
        {
            "resourceType": "Patient",
            "id": "n-text",
            "active": False,
            "name": [{"text": "Renée O'Brien", "suffix": ["Jr."]}],
        }
    )
    escapes = {"family": "O,Neil", "given": ["A|B", "back\\slash"]}  # a comma, a pipe, a backslash
    ident = {"system": "urn:x", "value": "a,b|c"}
    out.append({"resourceType": "Patient", "id": "n-esc", "name": [escapes], "identifier": [ident]})
    for i, birth in enumerate(BIRTHDATES):
        out.append({"resourceType": "Patient", "id": f"b{i}", "birthDate": birth})
    for i, (system, value, type_code) in enumerate(IDENTIFIERS):
        ident: dict[str, Any] = {"value": value}
        if system:
            ident["system"] = system
        if type_code:
            text = {"MR": "Medical record number", "PI": "Patient internal"}[type_code]
            ident["type"] = {"coding": [{"system": V2_0203, "code": type_code}], "text": text}
        out.append({"resourceType": "Patient", "id": f"i{i}", "identifier": [ident]})
    for i, patient in enumerate(out):
        if i % 5:
            patient["gender"] = GENDERS[i % len(GENDERS)]
        if i % 3:
            patient.setdefault("active", i % 3 == 1)
    return out


def _encounters() -> list[dict[str, Any]]:
    out = []
    for i in range(len(PERIODS) + 1):
        enc: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": f"e{i}",
            "status": ENC_STATUS[i % len(ENC_STATUS)],
            "class": _coding(*CLASSES[i % len(CLASSES)]),
        }
        if i < len(PERIODS):
            enc["period"] = PERIODS[i]
        if i % 5:
            enc["subject"] = {"reference": SUBJECT_REFS[i % 4]}
        out.append(enc)
    return out


WORLD = _observations() + _patients() + _encounters()


def _tokens(pool: list[tuple[str | None, str, str | None]]) -> list[str]:
    forms = set()
    for system, code, _ in pool:
        forms |= {code, f"|{code}"} | ({f"{system}|{code}", f"{system}|"} if system else set())
    return sorted(forms)


def _token_queries(name: str, pool: list[Any], texts: list[str]) -> list[tuple[str, str]]:
    tokens = _tokens(pool)
    out = [(name, t) for t in tokens] + [(f"{name}:not", t) for t in tokens]
    out += [(f"{name}:text", t) for t in texts]
    out.append((name, ",".join(tokens[:2])))
    return out


def _missing(name: str) -> list[tuple[str, str]]:
    return [(f"{name}:missing", "true"), (f"{name}:missing", "false")]


def _dates(name: str, values: list[str]) -> list[tuple[str, str]]:
    return [(name, p + v) for p in PREFIXES for v in values] + _missing(name)


def _quantities(name: str) -> list[tuple[str, str]]:
    out = [(name, p + v) for p in PREFIXES for v in SEARCH_AMOUNTS]
    out += [
        (name, p + v + u) for p in ("", "gt", "le") for v in SEARCH_AMOUNTS for u in UNIT_QUERIES
    ]
    out.append((name, f"70|{UCUM}|/min,100|{UCUM}|mm[Hg]"))
    return sorted(set(out)) + _missing(name)


def _strings(name: str) -> list[tuple[str, str]]:
    out = [(f"{name}{m}", v) for m in ("", ":exact", ":contains") for v in NAME_QUERIES]
    escaped = [("", "o\\,n"), ("", "o,n"), ("", "a|b"), (":exact", "A|B"), ("", "back\\\\")]
    out += [(f"{name}{m}", v) for m, v in escaped]
    return [*out, (name, "zo,smi"), *_missing(name)]


def _references(name: str, values: list[str], type_modifier: bool) -> list[tuple[str, str]]:
    out = [(name, v) for v in values] + [(name, ",".join(values[:2]))]
    out += [(name, f"{BASE}/{v}") for v in values if "/" in v]  # absolute, on this server
    if type_modifier:
        out += [(f"{name}:Patient", v) for v in ("p1", "p2", "g1")]
    return out + _missing(name)


def _codes(name: str, codes: list[str]) -> list[tuple[str, str]]:
    return [(name, c) for c in codes] + [(f"{name}:not", c) for c in codes] + _missing(name)


IDENT_POOL = [(s, v, None) for s, v, _ in IDENTIFIERS]
OF_TYPE = [f"{V2_0203}|{t}|{v}" for t in ("MR", "PI") for v in ("12345", "777", "ABC")]
GRID: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "Observation.code": ("Observation", _token_queries("code", CODINGS, TEXT_QUERIES)),
    "Observation.category": (
        "Observation",
        _token_queries("category", CATEGORIES, ["vital", "LAB", "survey", "signs"]),
    ),
    "Observation.component-code": (
        "Observation",
        _token_queries("component-code", CODINGS, TEXT_QUERIES),
    ),
    "Observation.combo-code": ("Observation", _token_queries("combo-code", CODINGS, TEXT_QUERIES)),
    "Observation.status": ("Observation", _codes("status", OBS_STATUS)),
    "Observation.subject": ("Observation", _references("subject", REF_QUERIES, True)),
    "Observation.patient": ("Observation", _references("patient", REF_QUERIES, False)),
    "Observation.encounter": (
        "Observation",
        _references("encounter", ["e1", "Encounter/e2", "e9"], False),
    ),
    "Observation.date": ("Observation", _dates("date", SEARCH_DATES)),
    "Observation.value-quantity": ("Observation", _quantities("value-quantity")),
    "Patient.name": ("Patient", _strings("name")),
    "Patient.family": ("Patient", _strings("family")),
    "Patient.given": ("Patient", _strings("given")),
    "Patient.birthdate": ("Patient", _dates("birthdate", SEARCH_BIRTHDATES)),
    "Patient.gender": ("Patient", _codes("gender", GENDERS)),
    "Patient.active": ("Patient", _codes("active", ["true", "false"])),
    "Patient.identifier": (
        "Patient",
        _token_queries("identifier", IDENT_POOL, ["medical", "MEDICAL rec", "patient", "record"])
        + [("identifier:of-type", v) for v in OF_TYPE]
        + [("identifier", "urn:x|a\\,b\\|c"), ("identifier", "a\\,b\\|c")],
    ),
    "Encounter.class": (
        "Encounter",
        _token_queries("class", CLASSES, ["amb", "virt", "video", "Emergency"]),
    ),
    "Encounter.status": ("Encounter", _codes("status", ENC_STATUS)),
    "Encounter.date": ("Encounter", _dates("date", SEARCH_DATES)),
    "Encounter.subject": ("Encounter", _references("subject", REF_QUERIES, True)),
    "Encounter.patient": ("Encounter", _references("patient", REF_QUERIES, False)),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded(server: Server) -> Server:
    await server.replace_all(WORLD)
    return server


@pytest.mark.parametrize("case", sorted(GRID))
async def test_every_query_of_a_parameter(loaded: Server, case: str) -> None:
    rtype, queries = GRID[case]
    wrong = []
    for key, value in queries:
        found = await loaded.search(rtype, [(key, value)], 1000)
        expected = reference.search(REGISTRY, WORLD, rtype, [(key, value)])
        if sorted(found) != sorted(expected):
            extra, missing = sorted(set(found) - expected), sorted(expected - set(found))
            wrong.append(f"{rtype}?{key}={value}: unexpected {extra}, missing {missing}")
    assert not wrong, f"{len(wrong)} of {len(queries)} queries disagree:\n" + "\n".join(wrong)
