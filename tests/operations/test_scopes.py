"""The operations under SMART scopes: they read through the request's scoped storage view, so a
patient-context token sees its own patient's data only (tests/auth/enforcement has the harness)."""

from __future__ import annotations

from tests.auth.enforcement.conftest import VITAL, Server, ids, server

__all__ = ["server"]  # the fixture, used below


async def _devices(srv: Server) -> None:
    for pid in ("p1", "p2"):
        device = {"resourceType": "Device", "id": f"d-{pid}", "status": "active",
                  "patient": {"reference": f"Patient/{pid}"}}  # fmt: skip
        r = await srv.http.put(f"Device/d-{pid}", json=device, headers=srv.admin)
        assert r.status_code == 201, r.text


async def test_lastn_is_confined(server: Server) -> None:
    h = server.scopes("patient/Observation.rs")
    mine = await server.http.get("Observation/$lastn", params={"patient": "p1", "category": VITAL}, headers=h)  # fmt: skip
    assert mine.status_code == 200
    assert ids(mine.json()) and ids(mine.json()) <= {"Observation/o1", "Observation/o4"}
    other = await server.http.get("Observation/$lastn", params={"patient": "p2", "category": VITAL}, headers=h)  # fmt: skip
    assert other.status_code == 200 and ids(other.json()) == set()
    # Without a patient parameter, the patient in the token's launch context.
    implicit = await server.http.get("Observation/$lastn", params={"category": VITAL}, headers=h)
    assert implicit.status_code == 200 and ids(implicit.json()) == ids(mine.json())


async def test_rpm_billing_is_confined(server: Server) -> None:
    await _devices(server)
    q = {"month": "2026-10"}

    def listed(body: dict[str, object]) -> set[str]:
        params = body["parameter"]
        assert isinstance(params, list)
        return {
            part["valueReference"]["reference"]
            for p in params
            if p["name"] == "patient"
            for part in p["part"]
            if part["name"] == "patient"
        }

    everyone = await server.http.get("$rpm-billing", params=q, headers=server.scopes("user/*.rs"))
    assert listed(everyone.json()) == {"Patient/p1", "Patient/p2"}
    # Device is not in the R4 Patient compartment, so patient/*.rs reaches no Device and the
    # `_has:Device` that finds RPM patients needs a Device scope too (enforce.restrict_links).
    h = server.scopes("patient/*.rs")
    assert listed((await server.http.get("$rpm-billing", params=q, headers=h)).json()) == set()
    h = server.scopes("patient/*.rs", "user/Device.rs")
    own = await server.http.get("$rpm-billing", params=q, headers=h)
    assert listed(own.json()) == {"Patient/p1"}
    h = server.scopes("patient/*.rs")
    assert (
        await server.http.get("Patient/p2/$rpm-billing", params=q, headers=h)
    ).status_code == 404
