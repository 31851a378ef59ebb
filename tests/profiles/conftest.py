"""Profiles: the validator against real examples and one rule at a time, and over HTTP."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.conformance import build_profiles, server_resources
from fhir_server.errors import Issue
from fhir_server.fhir.profiles import ProfileRegistry
from tests.api.conftest import BASE, make_settings

SERVER_SD = "https://fhir-server.dev/fhir/StructureDefinition"
CORE_SD = "http://hl7.org/fhir/StructureDefinition"
RPM_OBSERVATION = f"{SERVER_SD}/rpm-observation"
RPM_DEVICE = f"{SERVER_SD}/rpm-device"
VIRTUAL_VISIT = f"{SERVER_SD}/virtual-visit"
MODALITY = f"{SERVER_SD}/virtual-modality"
SERVICE = f"{SERVER_SD}/virtual-service-details"
MODALITY_SYSTEM = "https://fhir-server.dev/fhir/CodeSystem/virtual-modality"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MDC = "urn:iso:std:iso:11073:10101"


@pytest.fixture(scope="session")
def registry() -> ProfileRegistry:
    return build_profiles(server_resources(None))


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


def paths(issues: list[Issue]) -> set[str]:
    return {p for i in errors(issues) for p in i.expression}


def quantity(value: float, code: str, unit: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit or code, "system": UCUM, "code": code}


def bp_observation() -> dict[str, Any]:
    """A home blood-pressure reading that conforms to rpm-observation, vitalsigns and bp."""
    return copy.deepcopy(
        {
            "resourceType": "Observation",
            "id": "bp1",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-10-14T08:30:00-04:00",
            "device": {"reference": "Device/d1"},
            "component": [
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": quantity(128, "mm[Hg]", "mmHg"),
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                    "valueQuantity": quantity(82, "mm[Hg]", "mmHg"),
                },
            ],
        }
    )


def rpm_device() -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": "d1",
        "meta": {"profile": [RPM_DEVICE]},
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SNO"}
                    ]
                },
                "system": "https://cardiosense.example/sid/serial",
                "value": "CS2-0001",
            }
        ],
        "status": "active",
        "type": {"coding": [{"system": MDC, "code": "528391"}], "text": "BP monitor"},
        "patient": {"reference": "Patient/p1"},
    }


def virtual_visit() -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "e1",
        "meta": {"profile": [VIRTUAL_VISIT]},
        "extension": [
            {"url": MODALITY, "valueCoding": {"system": MODALITY_SYSTEM, "code": "video"}},
            {
                "url": SERVICE,
                "extension": [
                    {
                        "url": "channelType",
                        "valueCoding": {
                            "system": "http://hl7.org/fhir/virtual-service-type",
                            "code": "zoom",
                        },
                    },
                    {"url": "address", "valueUrl": "https://visit.example/j/123"},
                    {"url": "sessionKey", "valueString": "123"},
                ],
            },
        ],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
        "subject": {"reference": "Patient/p1"},
        "participant": [{"individual": {"reference": "Practitioner/dr1"}}],
        "period": {"start": "2026-10-14T09:00:00-04:00", "end": "2026-10-14T09:20:00-04:00"},
    }


async def _client(tmp_path: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path, **overrides))
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield c


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(tmp_path):
        yield c


@pytest.fixture
async def strict_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server with require_rpm_profiles on."""
    async for c in _client(tmp_path, require_rpm_profiles=True):
        yield c
