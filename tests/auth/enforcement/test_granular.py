"""Granular scopes (`patient/Observation.rs?category=...`) filter results exactly to the matching
subset; several on one type are ORed (SMART.md 1.4 "Search-parameter restrictions", 1.8 "Granular
`?category=` scopes", 2.27 fine-grained scopes)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.auth.enforcement.conftest import DIAGNOSIS, LAB, PROBLEM, VITAL, Server, ids, observation

pytestmark = pytest.mark.asyncio(loop_scope="module")
OBS = "patient/Observation.rs"
COND = "patient/Condition.rs"


async def _search(server: Server, h: dict[str, str], path: str, **params: str) -> dict[str, Any]:
    resp = await server.http.get(path, params=params, headers=h)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_results_are_exactly_the_matching_subset(shared: Server) -> None:
    """SMART.md 2.27: results match the scope's category and are exactly the matching subset of
    the resource-level results; the query is not rejected."""
    full = ids(await _search(shared, shared.scopes(OBS), "Observation"))
    vital = shared.scopes(f"{OBS}?category={VITAL}")
    got = ids(await _search(shared, vital, "Observation"))
    subset = ids(await _search(shared, shared.scopes(OBS), "Observation", category=VITAL))
    assert got == subset == {"Observation/o1", "Observation/o4"}
    assert got < full
    body = await _search(shared, vital, "Observation", _total="accurate")
    assert body["total"] == 2


async def test_several_granular_scopes_are_ored(shared: Server) -> None:
    """SMART.md 1.8 "Several granular scopes for the same type are OR'ed"."""
    h = shared.scopes(f"{OBS}?category={VITAL}", f"{OBS}?category={LAB}")
    assert ids(await _search(shared, h, "Observation")) == {
        "Observation/o1", "Observation/o2", "Observation/o4"}  # fmt: skip
    h = shared.scopes(f"{COND}?category={PROBLEM}", f"{COND}?category={DIAGNOSIS}")
    assert ids(await _search(shared, h, "Condition")) == {"Condition/c1", "Condition/c2"}
    h = shared.scopes(f"{COND}?category={PROBLEM}")
    assert ids(await _search(shared, h, "Condition")) == {"Condition/c1"}


async def test_client_criteria_combine_with_the_scope(shared: Server) -> None:
    """SMART.md 2.27 "Every earlier search ... is repeated": client criteria AND scope criteria."""
    h = shared.scopes(f"{OBS}?category={VITAL}")
    assert ids(await _search(shared, h, "Observation", category=LAB)) == set()
    assert ids(await _search(shared, h, "Observation", _id="o1,o2")) == {"Observation/o1"}
    body = await _search(shared, h, "Observation", patient="p1", code="http://loinc.org|8867-4")
    assert ids(body) == {"Observation/o1", "Observation/o4"}


async def test_reads_outside_the_granular_subset_are_404(shared: Server) -> None:
    """SMART.md 1.8: a read answers only for resources matching the scope query."""
    h = shared.scopes(f"{OBS}?category={VITAL}")
    assert (await shared.http.get("Observation/o1", headers=h)).status_code == 200
    assert (await shared.http.get("Observation/o2", headers=h)).status_code == 404
    assert (await shared.http.get("Observation/o3", headers=h)).status_code == 404


async def test_user_granular_scope(shared: Server) -> None:
    """SMART.md 1.4: granular restrictions also apply to `user/` scopes (no compartment)."""
    h = shared.scopes(f"user/Observation.rs?category={VITAL}")
    assert ids(await _search(shared, h, "Observation")) == {
        "Observation/o1", "Observation/o3", "Observation/o4"}  # fmt: skip


async def test_paging_stays_filtered(shared: Server) -> None:
    """SMART.md 2.27: every page of a granular search holds only matching resources."""
    h = shared.scopes(f"{OBS}?category={VITAL}")
    body = await _search(shared, h, "Observation", _count="1")
    seen = ids(body)
    while nxt := next((x["url"] for x in body["link"] if x["relation"] == "next"), None):
        resp = await shared.http.get(nxt, headers=h)
        body = resp.json()
        seen |= ids(body)
    assert seen == {"Observation/o1", "Observation/o4"}


async def test_granular_write_must_match(server: Server) -> None:
    """SMART.md 1.8: a resource written under a granular scope must match the scope query."""
    h = server.scopes(f"patient/Observation.c?category={VITAL}")
    assert (await server.http.post("Observation", json=observation("n", "p1", LAB),
                                   headers=h)).status_code == 403  # fmt: skip
    assert (await server.http.post("Observation", json=observation("n", "p1", VITAL),
                                   headers=h)).status_code == 201  # fmt: skip


async def test_unusable_scope_query_reaches_nothing(shared: Server) -> None:
    """SMART.md 1.4 "Modifiers, chaining ... are experimental": a scope query the server cannot
    apply (unknown parameter) reaches nothing rather than everything."""
    h = shared.scopes(f"{OBS}?no-such-param=x")
    assert ids(await _search(shared, h, "Observation")) == set()
    assert (await shared.http.get("Observation/o1", headers=h)).status_code == 404


async def test_multi_type_search_with_granular_scopes(shared: Server) -> None:
    """SMART.md 2.27: filtering also holds for searches over several types."""
    h = shared.scopes(f"{OBS}?category={LAB}", f"{COND}?category={PROBLEM}")
    body = await _search(shared, h, "", _type="Observation,Condition")
    assert ids(body) == {"Observation/o2", "Condition/c1"}
