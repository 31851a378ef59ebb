"""`patient/` scopes confine reads, searches and writes to the Patient compartment of the patient
in context (SMART.md 1.4 "Who scopes apply to", 1.8 "`patient/` scopes")."""

from __future__ import annotations

import pytest

from tests.auth.enforcement.conftest import VITAL, Server, condition, ids, observation

P1_OBS = {"Observation/o1", "Observation/o2", "Observation/o4"}


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_search_is_confined_to_the_compartment(shared: Server) -> None:
    """SMART.md 1.8: every result is in the compartment of the patient in context."""
    h = shared.scopes("patient/Observation.rs")
    body = (await shared.http.get("Observation", params={"_total": "accurate"}, headers=h)).json()
    assert ids(body) == P1_OBS
    assert body["total"] == 3


async def test_server_adds_the_filter_rather_than_trusting_parameters(shared: Server) -> None:
    """SMART.md 1.8 "add a compartment filter rather than trusting the client's `patient=`"."""
    h = shared.scopes("patient/Observation.rs")
    for params in ({"patient": "p2"}, {"subject": "Patient/p2"}, {"_id": "o3"}):
        body = (await shared.http.get("Observation", params=params, headers=h)).json()
        assert ids(body) == set(), params
    body = (await shared.http.get("Observation", params={"patient": "p1"}, headers=h)).json()
    assert ids(body) == P1_OBS


async def test_reads_outside_the_compartment_are_404(shared: Server) -> None:
    """SMART.md 1.8 "Out-of-compartment reads -> 403/404": 404, like a resource that does not
    exist, so existence does not leak."""
    h = shared.scopes("patient/Observation.rs", "patient/Patient.rs")
    for path in ("Observation/o3", "Patient/p2", "Observation/o3/_history/1",
                 "Observation/o3/_history"):  # fmt: skip
        resp = await shared.http.get(path, headers=h)
        assert resp.status_code == 404, path
        missing = await shared.http.get(path.replace("o3", "nope").replace("p2", "nope"), headers=h)
        assert missing.status_code == 404
        assert resp.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
    assert (await shared.http.get("Observation/o1", headers=h)).status_code == 200
    assert (await shared.http.get("Patient/p1", headers=h)).status_code == 200


async def test_compartment_search(shared: Server) -> None:
    """SMART.md 1.8 / issue: compartment search (Patient/1/Observation) is checked too."""
    h = shared.scopes("patient/Observation.rs")
    body = (await shared.http.get("Patient/p1/Observation", headers=h)).json()
    assert ids(body) == P1_OBS
    body = (await shared.http.get("Patient/p2/Observation", headers=h)).json()
    assert ids(body) == set()
    assert (await shared.http.get("Patient/p1/Condition", headers=h)).status_code == 403


async def test_wildcard_patient_scope(shared: Server) -> None:
    """SMART.md 1.4 wildcards: `patient/*.rs` reaches every compartment type of the patient."""
    h = shared.scopes("patient/*.rs")
    body = (await shared.http.get("", params={"_type": "Observation,Condition,Encounter"},
                                  headers=h)).json()  # fmt: skip
    assert ids(body) == P1_OBS | {"Condition/c1", "Condition/c2", "Encounter/e1"}
    body = (await shared.http.get("Patient", headers=h)).json()
    assert ids(body) == {"Patient/p1"}
    # Practitioner is not in the Patient compartment: nothing of it is reachable.
    assert ids((await shared.http.get("Practitioner", headers=h)).json()) == set()
    assert (await shared.http.get("Practitioner/dr", headers=h)).status_code == 404


async def test_no_patient_in_context_reaches_nothing(shared: Server) -> None:
    """SMART.md 1.4: the server SHALL establish a patient in context for `patient/` scopes; a
    grant without one reaches no data."""
    h = shared.scopes("patient/Observation.rs", patient=None)
    assert ids((await shared.http.get("Observation", headers=h)).json()) == set()
    assert (await shared.http.get("Observation/o1", headers=h)).status_code == 404


async def test_create_outside_the_compartment_is_refused(server: Server) -> None:
    """SMART.md 1.8: every resource created must be in the compartment; 403, nothing stored."""
    h = server.scopes("patient/Observation.crs")
    resp = await server.http.post("Observation", json=observation("x", "p2", VITAL), headers=h)
    assert resp.status_code == 403
    body = (await server.http.get("Observation", params={"patient": "p2"},
                                  headers=server.admin)).json()  # fmt: skip
    assert ids(body) == {"Observation/o3"}
    resp = await server.http.post("Observation", json=observation("x", "p1", VITAL), headers=h)
    assert resp.status_code == 201
    assert resp.json()["subject"]["reference"] == "Patient/p1"
    resp = await server.http.put("Observation/mine", json=observation("mine", "p2", VITAL),
                                 headers=server.scopes("patient/Observation.u"))  # fmt: skip
    assert resp.status_code == 403
    assert (await server.http.get("Observation/mine", headers=server.admin)).status_code == 404


async def test_update_cannot_move_a_resource_out(server: Server) -> None:
    """SMART.md 1.8: every resource updated must stay in the compartment."""
    h = server.scopes("patient/Observation.rus")
    resp = await server.http.put("Observation/o1", json=observation("o1", "p2", VITAL), headers=h)
    assert resp.status_code == 403
    after = (await server.http.get("Observation/o1", headers=server.admin)).json()
    assert after["subject"]["reference"] == "Patient/p1"
    assert after["meta"]["versionId"] == "1"
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    resp = await server.http.patch("Observation/o1", json=patch, headers={
        **h, "Content-Type": "application/json-patch+json"})  # fmt: skip
    assert resp.status_code == 403


async def test_writes_to_resources_outside_are_404(server: Server) -> None:
    """SMART.md 1.8: the patient's app cannot change another patient's data, and cannot tell it
    exists: update/patch/delete -> 404 with nothing changed (as for a read); a conditional delete
    that reaches nothing answers as R4 says for no match (204), deleting nothing."""
    h = server.scopes("patient/Observation.cruds")
    resp = await server.http.put("Observation/o3", json=observation("o3", "p1", VITAL), headers=h)
    assert resp.status_code == 404
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    resp = await server.http.patch("Observation/o3", json=patch, headers={
        **h, "Content-Type": "application/json-patch+json"})  # fmt: skip
    assert resp.status_code == 404
    assert (await server.http.delete("Observation/o3", headers=h)).status_code == 404
    resp = await server.http.delete("Observation", params={"patient": "p2", "_id": "o3"}, headers=h)
    assert resp.status_code == 204
    after = await server.http.get("Observation/o3", headers=server.admin)
    assert after.status_code == 200 and after.json()["meta"]["versionId"] == "1"
    assert (await server.http.delete("Observation/o1", headers=h)).status_code == 204
    assert (await server.http.get("Observation/o1", headers=server.admin)).status_code == 410


async def test_patient_can_update_own_patient_resource(server: Server) -> None:
    """SMART.md 1.8: the Patient in context is in its own compartment (by id)."""
    h = server.scopes("patient/Patient.ru")
    p1 = (await server.http.get("Patient/p1", headers=h)).json()
    p1["gender"] = "female"
    assert (await server.http.put("Patient/p1", json=p1, headers=h)).status_code == 200
    p2 = {"resourceType": "Patient", "id": "p2", "gender": "male"}
    assert (await server.http.put("Patient/p2", json=p2, headers=h)).status_code == 404
    new = {"resourceType": "Patient", "name": [{"family": "New"}]}
    resp = await server.http.post("Patient", json=new, headers=server.scopes("patient/Patient.c"))
    assert resp.status_code == 403


async def test_user_scope_is_not_confined(server: Server) -> None:
    """SMART.md 1.4 `user/`: what the user can access (no compartment)."""
    h = server.scopes("user/Observation.rs", "user/Condition.c")
    body = (await server.http.get("Observation", headers=h)).json()
    assert ids(body) == P1_OBS | {"Observation/o3"}
    resp = await server.http.post("Condition", json=condition("n", "p2", VITAL), headers=h)
    assert resp.status_code == 201


async def test_patient_and_user_scopes_combine(shared: Server) -> None:
    """SMART.md 1.4: granted scopes add up; a `user/` scope widens a `patient/` one."""
    h = shared.scopes("patient/Observation.rs", "user/Observation.r")
    assert ids((await shared.http.get("Observation", headers=h)).json()) == P1_OBS
    assert (await shared.http.get("Observation/o3", headers=h)).status_code == 200


async def test_type_history_is_confined(shared: Server) -> None:
    """SMART.md 1.8 / issue: history is checked: only the compartment's versions are listed."""
    h = shared.scopes("patient/Observation.rs")
    body = (await shared.http.get("Observation/_history", headers=h)).json()
    assert {e["fullUrl"].split("/fhir/")[1] for e in body["entry"]} == P1_OBS
    body = (await shared.http.get("_history", headers=h)).json()
    assert {e["fullUrl"].split("/fhir/")[1] for e in body["entry"]} == P1_OBS


async def test_value_set_lookups_are_the_servers_own(server: Server) -> None:
    """SMART.md 1.8: a search's `:in` value set is read by the server for itself; the caller
    needs no ValueSet scope, and the results stay confined."""
    vs = {
        "resourceType": "ValueSet",
        "id": "hr",
        "url": "http://example.org/vs/hr",
        "status": "active",
        "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "8867-4"}]}]},
    }
    assert (await server.http.put("ValueSet/hr", json=vs, headers=server.admin)).status_code == 201
    h = server.scopes("patient/Observation.rs")
    resp = await server.http.get("Observation", params={"code:in": "ValueSet/hr"}, headers=h)
    assert resp.status_code == 200
    assert ids(resp.json()) == P1_OBS
    assert (await server.http.get("ValueSet/hr", headers=h)).status_code == 403
