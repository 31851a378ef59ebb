"""Batch and transaction entries and `_include`/`_revinclude`d resources are checked one by one
(SMART.md 1.4 "Batch/transaction: ... Authorize each entry inside the bundle", 1.8)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.auth.enforcement.conftest import LAB, VITAL, Server, ids, observation

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _bundle(kind: str, *entries: tuple[str, str, Any]) -> dict[str, Any]:
    out = []
    for method, url, resource in entries:
        e: dict[str, Any] = {"request": {"method": method, "url": url}}
        if resource is not None:
            e["resource"] = resource
        out.append(e)
    return {"resourceType": "Bundle", "type": kind, "entry": out}


async def test_batch_denied_entry_gets_its_own_403(shared: Server) -> None:
    """SMART.md 1.4 batch: each entry authorised; a denied entry answers 403 in its place."""
    h = shared.scopes("patient/Observation.rs", "patient/Patient.r")
    bundle = _bundle(
        "batch",
        ("GET", "Observation/o1", None),
        ("GET", "Condition/c1", None),
        ("GET", "Observation/o3", None),
        ("POST", "Observation", observation("x", "p1", VITAL)),
        ("GET", "Observation?category=" + quote(VITAL, safe=""), None),
        ("GET", "Patient/p1", None),
    )
    resp = await shared.http.post("", json=bundle, headers=h)
    assert resp.status_code == 200
    statuses = [e["response"]["status"] for e in resp.json()["entry"]]
    assert [s.split()[0] for s in statuses] == ["200", "403", "404", "403", "200", "200"]
    search = resp.json()["entry"][4]["resource"]
    assert ids(search) == {"Observation/o1", "Observation/o4"}


async def test_transaction_with_a_denied_entry_fails_whole(server: Server) -> None:
    """SMART.md 1.4 transaction: one entry the grant does not permit fails the transaction and
    nothing is written."""
    h = server.scopes("patient/Observation.cruds")
    bundle = _bundle(
        "transaction",
        ("POST", "Observation", observation("a", "p1", VITAL)),
        (
            "POST",
            "Condition",
            {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}},
        ),
    )
    resp = await server.http.post("", json=bundle, headers=h)
    assert resp.status_code == 403
    bundle = _bundle(
        "transaction",
        ("PUT", "Observation/t1", observation("t1", "p1", VITAL)),
        ("PUT", "Observation/t2", observation("t2", "p2", VITAL)),  # outside the compartment
    )
    resp = await server.http.post("", json=bundle, headers=h)
    assert resp.status_code == 403
    assert (await server.http.get("Observation/t1", headers=server.admin)).status_code == 404
    bundle = _bundle("transaction", ("DELETE", "Observation/o2", None),
                     ("GET", "Observation/o1", None))  # fmt: skip
    resp = await server.http.post("", json=bundle, headers=h)
    assert resp.status_code == 200
    assert (await server.http.get("Observation/o2", headers=server.admin)).status_code == 410


async def test_transaction_get_entries_are_checked(server: Server) -> None:
    """SMART.md 1.4: GET entries of a transaction are authorised like direct reads."""
    h = server.scopes("patient/Observation.crs")
    bundle = _bundle("transaction", ("POST", "Observation", observation("a", "p1", LAB)),
                     ("GET", "Observation/o3", None), ("GET", "Condition/c1", None))  # fmt: skip
    resp = await server.http.post("", json=bundle, headers=h)
    assert resp.status_code == 200
    statuses = [e["response"]["status"].split()[0] for e in resp.json()["entry"]]
    assert statuses == ["201", "404", "403"]


async def test_include_drops_resources_not_permitted(shared: Server) -> None:
    """SMART.md 1.8 / issue: every resource returned by `_include` is checked; those not
    permitted are left out."""
    params = {"_include": "Observation:subject", "_id": "o1,o3"}
    only_obs = shared.scopes("user/Observation.rs")
    body = (await shared.http.get("Observation", params=params, headers=only_obs)).json()
    assert ids(body) == {"Observation/o1", "Observation/o3"}
    assert ids(body, "include") == set()
    both = shared.scopes("user/Observation.rs", "patient/Patient.r")
    body = (await shared.http.get("Observation", params=params, headers=both)).json()
    assert ids(body, "include") == {"Patient/p1"}
    performer = {"_include": "Observation:performer"}
    h = shared.scopes("patient/*.rs")  # Practitioner is outside the Patient compartment
    body = (await shared.http.get("Observation", params=performer, headers=h)).json()
    assert ids(body, "include") == set()


async def test_revinclude_drops_resources_not_permitted(shared: Server) -> None:
    """SMART.md 1.8 / issue: `_revinclude`d resources are filtered by type, compartment and
    granular scope."""
    h = shared.scopes("patient/Patient.rs", f"patient/Observation.rs?category={VITAL}")
    params = {"_revinclude": ["Observation:subject", "Condition:subject"]}
    body = (await shared.http.get("Patient", params=params, headers=h)).json()
    assert ids(body) == {"Patient/p1"}
    assert ids(body, "include") == {"Observation/o1", "Observation/o4"}
    h = shared.scopes("user/Patient.rs", "patient/Observation.rs")
    body = (await shared.http.get("Patient", params=params, headers=h)).json()
    assert ids(body) == {"Patient/p1", "Patient/p2"}
    assert ids(body, "include") == {"Observation/o1", "Observation/o2", "Observation/o4"}
