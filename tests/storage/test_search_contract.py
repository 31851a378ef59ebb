"""Search through the storage contract, the same cases on every engine: each parameter type and
modifier, chains, `_has`, `_list`, text, sorting, includes, totals and keyset paging."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from fhir_server.fhir.index_values import (
    CompositeValue,
    DateValue,
    FullTextValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.query import (
    ChainCriterion,
    Clause,
    CompartmentCriterion,
    CompositeCriterion,
    Criterion,
    DateCriterion,
    HasCriterion,
    IdCriterion,
    Include,
    ListCriterion,
    MissingCriterion,
    NumberCriterion,
    Prefix,
    QuantityCriterion,
    ReferenceCriterion,
    SearchQuery,
    SortKey,
    StringCriterion,
    TextCriterion,
    TokenCriterion,
    TokenSetCriterion,
    UriCriterion,
)
from fhir_server.storage.base import Storage
from tests.storage.helpers import save

pytestmark = [pytest.mark.all_engines, pytest.mark.asyncio(loop_scope="module")]
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def day(y: int, m: int, d: int) -> tuple[int, int]:
    lo = dt.datetime(y, m, d, tzinfo=dt.UTC)
    hi = lo + dt.timedelta(days=1)
    return int(lo.timestamp()) * 10**6, int(hi.timestamp()) * 10**6


def patient(name: str, family: str, birth: tuple[int, int] | None, gender: str) -> list[IndexValue]:
    out: list[IndexValue] = [
        StringValue("name", name.lower().replace("á", "a"), name),
        StringValue("name", family.lower(), family),
        TokenValue("gender", "http://hl7.org/fhir/administrative-gender", gender),
        FullTextValue("_text", f"{name} {family}"),
    ]
    if birth:
        out.append(DateValue("birthdate", *birth))
    return out


def obs(
    subject: str, code: str, text: str, value: float, unit: str, when: tuple[int, int]
) -> list[IndexValue]:
    quantity = QuantityValue("value-quantity", value, UCUM, unit, unit)
    coding = TokenValue("code", LOINC, code)
    return [
        ReferenceValue("subject", "Patient", subject),
        ReferenceValue("patient", "Patient", subject),
        coding,
        TokenValue("code", None, None, text),
        quantity,
        DateValue("date", *when),
        CompositeValue("code-value-quantity", (coding, quantity)),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded(module_store: Storage) -> AsyncIterator[Storage]:
    """Loaded once per engine; the tests here only read."""
    store = module_store
    await save(store, "Patient", "p1", [*patient("Anna", "Smith", day(1980, 5, 1), "female"),
                                        TokenValue("identifier", "urn:mrn", "A1")])  # fmt: skip
    await save(store, "Patient", "p2", patient("Bob", "Jones", day(1990, 1, 1), "male"))
    await save(store, "Patient", "p3", patient("Ánna", "Test", None, "female"))
    await save(
        store, "Observation", "o1", obs("p1", "8867-4", "heart rate", 70, "/min", day(2024, 1, 1))
    )
    await save(
        store,
        "Observation",
        "o2",
        obs("p2", "8310-5", "body temperature", 37.5, "Cel", day(2024, 2, 1)),
    )
    await save(
        store,
        "Observation",
        "o3",
        obs("p1", "8310-5", "body temperature", 38.2, "Cel", day(2024, 3, 1)),
    )
    await save(store, "RiskAssessment", "r1", [NumberValue("probability", 0.25),
                                               ReferenceValue("subject", None, None, "http://other.org/Patient/9")])  # fmt: skip
    await save(store, "ValueSet", "v1", [UriValue("url", "http://x.org/fhir/ValueSet/a")])
    await save(store, "List", "l1", [ReferenceValue("item", "Patient", "p2"),
                                     ReferenceValue("item", "Patient", "p3")])  # fmt: skip
    yield store


def q(types: Sequence[str], *clauses: Sequence[Criterion], **kw: object) -> SearchQuery:
    return SearchQuery(tuple(types), tuple(Clause(tuple(c)) for c in clauses), **kw)  # type: ignore[arg-type]


async def ids(store: Storage, query: SearchQuery) -> list[str]:
    return [m.id for m in (await store.search(query)).matches]


def _bd(prefix: Prefix, y: int, m: int, d: int) -> DateCriterion:
    return DateCriterion("birthdate", prefix, *day(y, m, d))


FILTER_CASES: dict[str, tuple[SearchQuery, set[str]]] = {
    "token-any-system": (
        q(["Observation"], [TokenCriterion("code", None, "8310-5", True)]),
        {"o2", "o3"},
    ),
    "token-system-code": (q(["Observation"], [TokenCriterion("code", LOINC, "8867-4")]), {"o1"}),
    "token-wrong-system": (q(["Observation"], [TokenCriterion("code", "urn:x", "8867-4")]), set()),
    "token-system-only": (q(["Patient"], [TokenCriterion("identifier", "urn:mrn", None)]), {"p1"}),
    "token-not": (
        q(["Patient"], [TokenCriterion("gender", None, "female", True, negate=True)]),
        {"p2"},
    ),
    "token-text": (
        q(["Observation"], [TokenCriterion("code", None, None, text="body")]),
        {"o2", "o3"},
    ),
    "token-set": (
        q(["Observation"], [TokenSetCriterion("code", ((LOINC, "8867-4"), (None, "x")))]),
        {"o1"},
    ),
    "token-set-system": (
        q(["Observation"], [TokenSetCriterion("code", (), (LOINC,))]),
        {"o1", "o2", "o3"},
    ),
    "token-not-in": (
        q(["Observation"], [TokenSetCriterion("code", ((None, "8867-4"),), negate=True)]),
        {"o2", "o3"},
    ),
    "string-prefix": (q(["Patient"], [StringCriterion("name", "ann")]), {"p1", "p3"}),
    "string-exact": (q(["Patient"], [StringCriterion("name", "Anna", "exact")]), {"p1"}),
    "string-contains": (q(["Patient"], [StringCriterion("name", "on", "contains")]), {"p2"}),
    "date-eq": (q(["Patient"], [_bd("eq", 1980, 5, 1)]), {"p1"}),
    "date-ne": (q(["Patient"], [_bd("ne", 1980, 5, 1)]), {"p2"}),
    "date-gt": (q(["Patient"], [_bd("gt", 1985, 1, 1)]), {"p2"}),
    "date-lt": (q(["Patient"], [_bd("lt", 1985, 1, 1)]), {"p1"}),
    "date-ge": (q(["Patient"], [_bd("ge", 1990, 1, 1)]), {"p2"}),
    "date-le": (q(["Patient"], [_bd("le", 1980, 5, 1)]), {"p1"}),
    "date-sa": (q(["Patient"], [_bd("sa", 1980, 5, 1)]), {"p2"}),
    "date-eb": (q(["Patient"], [_bd("eb", 1990, 1, 1)]), {"p1"}),
    "date-ap": (q(["Patient"], [_bd("ap", 1990, 1, 1)]), {"p2"}),
    "number-gt": (
        q(["RiskAssessment"], [NumberCriterion("probability", "gt", 0.2, 0.15, 0.25)]),
        {"r1"},
    ),
    "number-eq": (
        q(["RiskAssessment"], [NumberCriterion("probability", "eq", 0.3, 0.25, 0.35)]),
        {"r1"},
    ),
    "number-lt": (
        q(["RiskAssessment"], [NumberCriterion("probability", "lt", 0.2, 0.15, 0.25)]),
        set(),
    ),
    "quantity-gt-unit": (
        q(
            ["Observation"],
            [QuantityCriterion("value-quantity", "gt", 37, 36.5, 37.5, None, "Cel")],
        ),
        {"o2", "o3"},
    ),
    "quantity-eq-system": (
        q(
            ["Observation"],
            [QuantityCriterion("value-quantity", "eq", 70, 69.5, 70.5, UCUM, "/min")],
        ),
        {"o1"},
    ),
    "reference-typed": (
        q(["Observation"], [ReferenceCriterion("subject", "Patient", "p1")]),
        {"o1", "o3"},
    ),
    "reference-id-only": (q(["Observation"], [ReferenceCriterion("subject", None, "p2")]), {"o2"}),
    "reference-url": (
        q(
            ["RiskAssessment"],
            [ReferenceCriterion("subject", None, None, "http://other.org/Patient/9")],
        ),
        {"r1"},
    ),
    "uri-exact": (q(["ValueSet"], [UriCriterion("url", "http://x.org/fhir/ValueSet/a")]), {"v1"}),
    "uri-below": (q(["ValueSet"], [UriCriterion("url", "http://x.org/fhir", "below")]), {"v1"}),
    "uri-above": (
        q(["ValueSet"], [UriCriterion("url", "http://x.org/fhir/ValueSet/a/b", "above")]),
        {"v1"},
    ),
    "missing-true": (q(["Patient"], [MissingCriterion("birthdate", "date", True)]), {"p3"}),
    "missing-false": (q(["Patient"], [MissingCriterion("birthdate", "date", False)]), {"p1", "p2"}),
    "id": (q(["Patient"], [IdCriterion(("p1", "p3", "zz"))]), {"p1", "p3"}),
    "id-not": (q(["Patient"], [IdCriterion(("p1",), negate=True)]), {"p2", "p3"}),
    "or-within-clause": (
        q(
            ["Patient"],
            [StringCriterion("name", "bob"), TokenCriterion("identifier", "urn:mrn", "A1")],
        ),
        {"p1", "p2"},
    ),
    "and-of-clauses": (
        q(
            ["Patient"],
            [StringCriterion("name", "ann")],
            [TokenCriterion("gender", None, "female", True)],
            [MissingCriterion("birthdate", "date", False)],
        ),
        {"p1"},
    ),
    "chain": (
        q(
            ["Observation"],
            [
                ChainCriterion(
                    "subject", ("Patient",), (Clause((StringCriterion("name", "smith"),)),)
                )
            ],
        ),
        {"o1", "o3"},
    ),
    "has": (
        q(
            ["Patient"],
            [
                HasCriterion(
                    "Observation",
                    "subject",
                    (Clause((TokenCriterion("code", None, "8867-4", True),)),),
                )
            ],
        ),
        {"p1"},
    ),
    "composite": (
        q(
            ["Observation"],
            [
                CompositeCriterion(
                    "code-value-quantity",
                    (
                        TokenCriterion("code", LOINC, "8310-5"),
                        QuantityCriterion("value-quantity", "gt", 38, 37.5, 38.5),
                    ),
                )
            ],
        ),
        {"o3"},
    ),
    "text": (q(["Patient"], [TextCriterion("narrative", "anna")]), {"p1", "p3"}),
    "text-prefix-and": (q(["Patient"], [TextCriterion("narrative", "ann smi")]), {"p1"}),
    "text-or": (q(["Patient"], [TextCriterion("narrative", "bob OR test")]), {"p2", "p3"}),
    "compartment": (
        q(
            ["Observation", "RiskAssessment", "List"],
            [
                CompartmentCriterion(
                    "Patient",
                    "p1",
                    (("Observation", ("subject", "performer")), ("List", ("item",))),
                )
            ],
        ),
        {"o1", "o3"},
    ),
    "compartment-list-member": (
        q(["List"], [CompartmentCriterion("Patient", "p2", (("List", ("item",)),))]),
        {"l1"},
    ),
    "list": (q(["Patient"], [ListCriterion("l1")]), {"p2", "p3"}),
    "list-unknown": (q(["Patient"], [ListCriterion("nope")]), set()),
    "system-level": (q([], [IdCriterion(("p1", "o1"))]), {"p1", "o1"}),
    "two-types": (
        q(["Patient", "Observation"], [ReferenceCriterion("subject", "Patient", "p2")]),
        {"o2"},
    ),
}


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
async def test_filters(loaded: Storage, case: str) -> None:
    query, expected = FILTER_CASES[case]
    assert set(await ids(loaded, query)) == expected


SORT_CASES: dict[str, tuple[tuple[SortKey, ...], list[str]]] = {
    "date-asc-missing-last": ((SortKey("birthdate", "date"),), ["p1", "p2", "p3"]),
    "date-desc-missing-last": ((SortKey("birthdate", "date", True),), ["p2", "p1", "p3"]),
    "id-desc": ((SortKey("_id", "token", True),), ["p3", "p2", "p1"]),
    "string-then-id": (
        (SortKey("gender", "token"), SortKey("_id", "token", True)),
        ["p3", "p1", "p2"],
    ),
}


@pytest.mark.parametrize("case", sorted(SORT_CASES))
@pytest.mark.parametrize("count", [1, 10])
async def test_sort_and_paging(loaded: Storage, case: str, count: int) -> None:
    keys, expected = SORT_CASES[case]
    query = SearchQuery(("Patient",), sort=keys, count=count)
    got: list[str] = []
    page = await loaded.search(query)
    pages = [page]
    while True:
        got += [m.id for m in page.matches]
        if page.next_cursor is None:
            break
        page = await loaded.search(SearchQuery(("Patient",), sort=keys, count=count,
                                               after=page.next_cursor, snapshot=page.snapshot))  # fmt: skip
        pages.append(page)
    assert got == expected
    if count == 1:  # walk back from the last page with the previous-page cursors
        back: list[str] = []
        page = pages[-1]
        while page.prev_cursor is not None:
            page = await loaded.search(SearchQuery(("Patient",), sort=keys, count=count,
                                                   before=page.prev_cursor, snapshot=page.snapshot))  # fmt: skip
            back = [m.id for m in page.matches] + back
        assert back == expected[:-1]


async def test_total(loaded: Storage) -> None:
    page = await loaded.search(SearchQuery(("Observation",), count=1, total="accurate"))
    assert page.total == 3
    small = await loaded.search(SearchQuery(("Observation",), count=10))
    assert small.total == 3  # a single page counts itself
    nothing = await loaded.search(SearchQuery(("Observation",), count=0, total="accurate"))
    assert nothing.total == 3 and nothing.matches == []


async def test_include_and_revinclude(loaded: Storage) -> None:
    inc = Include("Observation", "subject")
    page = await loaded.search(
        q(["Observation"], [TokenCriterion("code", None, "8310-5", True)], includes=(inc,))
    )
    assert {m.id for m in page.matches} == {"o2", "o3"}
    assert sorted(r.id for r in page.included) == ["p1", "p2"]
    rev = Include("Observation", "subject", reverse=True)
    page = await loaded.search(q(["Patient"], [IdCriterion(("p1",))], includes=(rev,)))
    assert [m.id for m in page.matches] == ["p1"]
    assert sorted(r.id for r in page.included) == ["o1", "o3"]
    every = Include("List", "*")
    page = await loaded.search(q(["List"], [IdCriterion(("l1",))], includes=(every,)))
    assert sorted(r.id for r in page.included) == ["p2", "p3"]
    typed = Include("Observation", "subject", "Group")
    page = await loaded.search(q(["Observation"], [IdCriterion(("o1",))], includes=(typed,)))
    assert page.included == []
