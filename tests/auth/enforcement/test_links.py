"""Chained parameters, `_has` and `_list` under scopes (fhir_server/auth/enforce.py
`restrict_links`): a link tests resources of another type, so it is a search of that type too.
Without `s` on that type the search is refused (403); otherwise the link only sees what the grant
could find by searching the type itself (Patient compartment, granular scopes), so none of them
can probe resources the grant does not reach (SMART.md 1.4 "scopes are always limited", 1.8,
2.26, 2.27)."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

import pytest

from fhir_server.auth.enforce import Enforcer, Policy
from fhir_server.search.query import Clause, HasCriterion, TokenCriterion
from tests.auth.enforcement.conftest import LAB, VITAL, Server, grant, ids

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEART = "http://loinc.org|8867-4"
ENC = quote(HEART, safe="")
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category|"


async def _search(srv: Server, path: str, headers: dict[str, str], status: int = 200) -> Any:
    resp = await srv.http.get(path, headers=headers)
    assert resp.status_code == status, (path, resp.text)
    return resp.json()


async def test_has_needs_search_on_the_type_it_reaches(shared: Server) -> None:
    """The reported gap: `Patient?_has:Observation:...` with no Observation access is a probe."""
    q = f"Patient?_has:Observation:patient:code={HEART}"
    assert ids(await _search(shared, q, shared.admin)) == {"Patient/p1", "Patient/p2"}
    body = await _search(shared, q, shared.scopes("user/Patient.rs"), 403)
    assert body["resourceType"] == "OperationOutcome"
    assert "Observation" in body["issue"][0]["diagnostics"]
    # `r` alone on Observation is not `s`.
    await _search(shared, q, shared.scopes("user/Patient.rs", "user/Observation.r"), 403)
    h = shared.scopes("user/Patient.rs", "user/Observation.rs")
    assert ids(await _search(shared, q, h)) == {"Patient/p1", "Patient/p2"}


async def test_has_sees_only_the_granted_categories(shared: Server) -> None:
    """Granular scopes: p1 has a laboratory Observation, but a vital-signs-only grant must not
    learn that through `_has`."""
    h = shared.scopes("user/Patient.rs", f"user/Observation.rs?category={VITAL}")
    lab = await _search(shared, f"Patient?_has:Observation:patient:category={LAB}", h)
    assert ids(lab) == set()
    vital = await _search(shared, f"Patient?_has:Observation:patient:category={VITAL}", h)
    assert ids(vital) == {"Patient/p1", "Patient/p2"}
    admin = await _search(shared, f"Patient?_has:Observation:patient:category={LAB}", shared.admin)
    assert ids(admin) == {"Patient/p1"}


async def test_has_stays_in_the_patient_compartment(shared: Server) -> None:
    h = shared.scopes("patient/Patient.rs", "patient/Observation.rs")
    got = await _search(shared, f"Patient?_has:Observation:patient:code={HEART}", h)
    assert ids(got) == {"Patient/p1"}


async def test_nested_has_inside_a_chain_is_confined(shared: Server) -> None:
    scopes = ("user/Condition.rs", "user/Patient.rs", f"user/Observation.rs?category={VITAL}")
    q = f"Condition?subject:Patient._has:Observation:patient:category={LAB}"
    assert ids(await _search(shared, q, shared.admin)) == {"Condition/c1", "Condition/c2"}
    assert ids(await _search(shared, q, shared.scopes(*scopes))) == set()
    await _search(shared, q, shared.scopes("user/Condition.rs", "user/Patient.rs"), 403)


async def test_chain_needs_search_on_its_target(shared: Server) -> None:
    q = "Observation?subject:Patient.name=Two"
    assert ids(await _search(shared, q, shared.admin)) == {"Observation/o3"}
    await _search(shared, q, shared.scopes("user/Observation.rs"), 403)
    h = shared.scopes("user/Observation.rs", "user/Patient.rs")
    assert ids(await _search(shared, q, h)) == {"Observation/o3"}


async def test_chain_over_several_targets_keeps_the_covered_ones(shared: Server) -> None:
    """`subject.name` reaches Patient, Group, Location...: types the grant does not cover are
    left out of the link instead of refusing a common search."""
    h = shared.scopes("user/Observation.rs", "user/Patient.rs")
    assert ids(await _search(shared, "Observation?subject.name=Two", h)) == {"Observation/o3"}


async def test_chain_target_confined_to_the_compartment(shared: Server) -> None:
    """patient/*.rs reaches no Practitioner (not in the Patient compartment), so a chain to one
    matches nothing; with user/ scopes it finds o1 (performer Practitioner/dr)."""
    q = "Observation?performer:Practitioner.name=Doc"
    assert ids(await _search(shared, q, shared.scopes("patient/*.rs"))) == set()
    h = shared.scopes("user/Observation.rs", "user/Practitioner.rs")
    assert ids(await _search(shared, q, h)) == {"Observation/o1"}
    # The chain to the patient in context is restricted to that patient.
    h = shared.scopes("patient/Observation.rs", "patient/Patient.rs")
    assert ids(await _search(shared, "Observation?subject:Patient.name=Two", h)) == set()
    got = await _search(shared, "Observation?subject:Patient.name=One", h)
    assert ids(got) == {"Observation/o1", "Observation/o2", "Observation/o4"}


async def test_batch_entries_and_post_search_are_checked(shared: Server) -> None:
    h = shared.scopes("user/Patient.rs")
    resp = await shared.http.post(
        "Patient/_search", data={"_has:Observation:patient:code": HEART}, headers=h
    )
    assert resp.status_code == 403
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient?_has:Observation:patient:code={ENC}"}},
            {"request": {"method": "GET", "url": "Patient?name=One"}},
        ],
    }
    resp = await shared.http.post("", json=bundle, headers=h)
    assert resp.status_code == 200, resp.text
    statuses = [e["response"]["status"] for e in resp.json()["entry"]]
    assert statuses[0].startswith("403") and statuses[1].startswith("200")


async def test_restrict_links_is_a_no_op_without_links_or_restrictions() -> None:
    """Pure: a query without links, or a grant that restricts nothing, is passed on as is (the
    same objects); a patient/ grant adds its compartment to the `_has`'s criteria. (No granular
    scope here, so the services, used to parse those, are not needed.)"""
    no_services = cast(Any, None)
    plain = (Clause((TokenCriterion("code", "http://loinc.org", "8867-4"),)),)
    enforcer = Enforcer(no_services, Policy(grant("patient/*.rs", patient="p1")), "http://x/fhir")
    assert await enforcer.restrict_links(plain, no_services) is plain
    has = (Clause((HasCriterion("Observation", "patient", plain),)),)
    open_grant = Enforcer(no_services, Policy(grant("user/*.rs")), "http://x/fhir")
    assert await open_grant.restrict_links(has, no_services) is has
    confined = await enforcer.restrict_links(has, no_services)
    assert confined is not has
    inner = confined[0].criteria[0]
    assert isinstance(inner, HasCriterion) and len(inner.inner) == 2


async def test_list_needs_access_to_the_list(server: Server) -> None:
    """`_list=id` reveals the List's items: it needs `r` or `s` on List (else 403), and a List
    outside the grant's reach (another patient's) matches nothing."""
    for lid, pid, item in (("l1", "p1", "o1"), ("l2", "p2", "o3")):
        doc = {"resourceType": "List", "id": lid, "status": "current", "mode": "working",
               "subject": {"reference": f"Patient/{pid}"},
               "entry": [{"item": {"reference": f"Observation/{item}"}}]}  # fmt: skip
        r = await server.http.put(f"List/{lid}", json=doc, headers=server.admin)
        assert r.status_code == 201, r.text
    assert ids(await _search(server, "Observation?_list=l2", server.admin)) == {"Observation/o3"}
    await _search(server, "Observation?_list=l2", server.scopes("user/Observation.rs"), 403)
    h = server.scopes("patient/Observation.rs", "patient/List.r")
    assert ids(await _search(server, "Observation?_list=l2", h)) == set()
    assert ids(await _search(server, "Observation?_list=l1", h)) == {"Observation/o1"}
    h = server.scopes("user/Observation.rs", "user/List.rs")
    assert ids(await _search(server, "Observation?_list=l2", h)) == {"Observation/o3"}
