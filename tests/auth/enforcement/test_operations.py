"""Operations are enforced without code of their own: they reach data through `ctx.storage`,
which is the request's scoped view (SMART.md 1.8 and issue "... and operations";
ARCHITECTURE.md "One authorization decision point")."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.fhir import jsonio
from fhir_server.interactions import router
from fhir_server.interactions.common import prepare_write
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.operations import ALL_OPERATIONS, TABLE, Operation, OperationTable, OperationTarget
from fhir_server.search.query import SearchQuery
from tests.auth.enforcement.conftest import VITAL, Server, ids, observation


async def _list_observations(
    ctx: Services, req: FhirRequest, target: OperationTarget
) -> FhirResponse:
    """A stand-in for any operation that searches: every Observation it can see."""
    page = await ctx.storage.search(SearchQuery(("Observation",), count=100))
    found = sorted(f"Observation/{m.id}" for m in page.matches)
    return FhirResponse(200, jsonio.dumps({"found": found}), {})


async def _write_observation(
    ctx: Services, req: FhirRequest, target: OperationTarget
) -> FhirResponse:
    """A stand-in for an operation that writes (a billing run, say)."""
    patient = req.param("patient") or "p1"
    resource: dict[str, Any] = {**observation("op-made", patient, VITAL)}
    async with ctx.storage.transaction() as tx:
        await tx.write(prepare_write(ctx, resource, "Observation", "op-made", 1, 0, "PUT"))
    return FhirResponse(201, None, {})


PARAMS = {"resourceType": "Parameters"}
TEST_OPS = [
    Operation("test-list", _list_observations, system=True),
    Operation("test-write", _write_observation, system=True, affects_state=True),
]


@pytest.fixture(autouse=True)
def _test_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "OPERATIONS", OperationTable([*ALL_OPERATIONS, *TEST_OPS]))


async def test_operation_reads_see_only_what_the_grant_reaches(server: Server) -> None:
    """Issue "Every interaction ... is checked — including ... operations": an operation's
    searches are confined like a search's."""
    h = server.scopes(f"patient/Observation.rs?category={VITAL}")
    body = (await server.http.get("$test-list", headers=h)).json()
    assert body["found"] == ["Observation/o1", "Observation/o4"]
    h = server.scopes("user/Condition.rs")  # no Observation scope: it sees none
    assert (await server.http.get("$test-list", headers=h)).json()["found"] == []
    body = (await server.http.get("$test-list", headers=server.admin)).json()
    assert len(body["found"]) == 4


async def test_operation_writes_are_checked(server: Server) -> None:
    """SMART.md 1.8: writes made by an operation need the letter and stay in the compartment."""
    read_only = server.scopes("patient/Observation.rs")
    assert (
        await server.http.post("$test-write", json=PARAMS, headers=read_only)
    ).status_code == 403
    writer = server.scopes("patient/Observation.u")
    resp = await server.http.post("$test-write", params={"patient": "p2"}, json=PARAMS,
                                  headers=writer)  # fmt: skip
    assert resp.status_code == 403
    assert (await server.http.get("Observation/op-made", headers=server.admin)).status_code == 404
    resp = await server.http.post("$test-write", params={"patient": "p1"}, json=PARAMS,
                                  headers=writer)  # fmt: skip
    assert resp.status_code == 201


@pytest.mark.skipif(TABLE.find("everything", OperationTarget("Patient", "x")) is None,
                    reason="Patient/$everything is not registered")  # fmt: skip
async def test_patient_everything_is_confined(server: Server) -> None:
    """Issue: operations ($everything) get enforcement without code of their own."""
    h = server.scopes("patient/*.rs")
    resp = await server.http.get("Patient/p1/$everything", headers=h)
    assert resp.status_code == 200
    found = ids(resp.json(), None)
    assert {"Patient/p1", "Observation/o1", "Condition/c1", "Encounter/e1"} <= found
    assert not {"Patient/p2", "Observation/o3", "Condition/c3"} & found
    assert (await server.http.get("Patient/p2/$everything", headers=h)).status_code == 404
    only_obs = server.scopes(f"patient/Observation.rs?category={VITAL}", "patient/Patient.r")
    resp = await server.http.get("Patient/p1/$everything", headers=only_obs)
    assert resp.status_code == 200
    assert ids(resp.json(), None) == {"Patient/p1", "Observation/o1", "Observation/o4"}
