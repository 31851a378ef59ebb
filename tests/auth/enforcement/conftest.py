"""Enforcement tests: the real app over HTTP and a real SQLite store, with `Services.authenticate`
set to a stand-in that maps test bearer strings to AccessGrant values built here. Token issuance
and validation belong to the authorization server and are tested in tests/auth/server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.auth.grant import AccessGrant, Authenticate
from fhir_server.errors import Unauthorized
from tests.api.conftest import BASE, make_settings

VITAL = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
PROBLEM = "http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"
DIAGNOSIS = "http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis"
ADMIN = "admin"  # system/*.cruds: sees and changes everything


def grant(
    *scopes: str,
    patient: str | None = None,
    fhir_user: str | None = None,
    encounter: str | None = None,
) -> AccessGrant:
    return AccessGrant(
        client_id="test-app",
        scopes=tuple(scopes),
        token_id="jti",
        expires_at=4_000_000_000,
        fhir_user=fhir_user,
        patient=patient,
        encounter=encounter,
    )


def fake_authenticate(grants: dict[str, AccessGrant]) -> Authenticate:
    async def authenticate(header: str | None) -> AccessGrant:
        if header is None:
            raise Unauthorized("This server requires an access token")
        scheme, _, token = header.partition(" ")
        found = grants.get(token) if scheme.lower() == "bearer" else None
        if found is None:
            raise Unauthorized(
                "The access token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="fhir", error="invalid_token"'},
            )
        return found

    return authenticate


def _category(system_code: str) -> list[dict[str, Any]]:
    system, code = system_code.split("|")
    return [{"coding": [{"system": system, "code": code}]}]


def observation(
    id: str, patient: str, category: str, performer: str | None = None
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": _category(category),
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                          "code": "/min"},
    }  # fmt: skip
    if performer:
        obs["performer"] = [{"reference": performer}]
    return obs


def condition(id: str, patient: str, category: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id,
        "category": _category(category),
        "code": {"text": id},
        "subject": {"reference": f"Patient/{patient}"},
    }


def fixture_resources() -> list[dict[str, Any]]:
    """p1 is the patient in context; p2 is someone else."""
    return [
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}]},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Two"}]},
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doc"}]},
        observation("o1", "p1", VITAL, "Practitioner/dr"),
        observation("o2", "p1", LAB),
        observation("o3", "p2", VITAL),
        observation("o4", "p1", VITAL),
        condition("c1", "p1", PROBLEM),
        condition("c2", "p1", DIAGNOSIS),
        condition("c3", "p2", PROBLEM),
        {"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": {"reference": "Patient/p1"}},
    ]  # fmt: skip


Client = Callable[[str], httpx.AsyncClient]


class Server:
    """One app with the fixture data; `as_(token)` gives a client sending that bearer token."""

    def __init__(self, http: httpx.AsyncClient, grants: dict[str, AccessGrant]) -> None:
        self.http = http
        self.grants = grants

    def token(self, name: str, g: AccessGrant) -> dict[str, str]:
        """Registers `g` under `name`; the headers that present it."""
        self.grants[name] = g
        return {"Authorization": f"Bearer {name}"}

    def scopes(self, *scopes: str, patient: str | None = "p1") -> dict[str, str]:
        name = " ".join(scopes) + f"@{patient}"
        return self.token(name, grant(*scopes, patient=patient))

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Server]:
    app = create_app(make_settings(tmp_path))
    grants: dict[str, AccessGrant] = {ADMIN: grant("system/*.cruds")}
    async with LifespanManager(app) as manager:
        app.state.services.authenticate = fake_authenticate(grants)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            srv = Server(http, grants)
            entries = [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in fixture_resources()
            ]
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            resp = await http.post("", json=bundle, headers=srv.admin)
            assert resp.status_code == 200, resp.text
            yield srv


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A server of one's own: for tests that write."""
    async with running(tmp_path) as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """One server per module for tests that only read (their module runs in one event loop:
    `pytestmark = pytest.mark.asyncio(loop_scope="module")`)."""
    async with running(tmp_path_factory.mktemp("enforcement")) as srv:
        yield srv


def ids(bundle: dict[str, Any], mode: str | None = "match") -> set[str]:
    """`Type/id` of the entries (of one search mode; None: every entry with a resource)."""
    out = set()
    for e in bundle.get("entry", []):
        res = e.get("resource")
        if res is None or res.get("resourceType") == "OperationOutcome":
            continue
        if mode is None or e.get("search", {}).get("mode") == mode:
            out.add(f"{res['resourceType']}/{res['id']}")
    return out
