"""Subscriptions tests: the real app over HTTP, a real SQLite store, a real receiver on 127.0.0.1.

Retries are shortened through the settings so the error/recovery cycle runs in about a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.interactions.context import Services
from fhir_server.settings import Settings
from tests.api.conftest import BASE, make_settings
from tests.subscriptions.receiver import Receiver

FAST = {
    "subscription_allowed_hosts": "127.0.0.1",
    "subscription_poll_seconds": 0.05,
    "subscription_retry_attempts": 3,
    "subscription_retry_backoff": 0.05,
    "subscription_slow_retry": 0.3,
    "subscription_timeout": 2.0,
    "subscription_refresh_seconds": 0.5,
}


def sub_settings(tmp_path: Path, **overrides: object) -> Settings:
    return make_settings(tmp_path, **{**FAST, **overrides})


class Server:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def subscribe(self, endpoint: str, criteria: str, **channel: Any) -> str:
        body = subscription(endpoint, criteria, **channel)
        r = await self.client.post("/Subscription", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def subscription(self, id: str) -> dict[str, Any]:
        r = await self.client.get(f"/Subscription/{id}")
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def wait_status(self, id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            sub = await self.subscription(id)
            if sub["status"] == status:
                return sub
            if time.monotonic() > deadline:
                raise AssertionError(f"Subscription/{id} stayed {sub['status']}: {sub}")
            await asyncio.sleep(0.03)

    async def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(f"/{resource['resourceType']}", json=resource)
        assert r.status_code == 201, r.text
        result: dict[str, Any] = r.json()
        return result


def subscription(endpoint: str, criteria: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def vital(patient: str = "Patient/1", code: str = "8867-4", value: float = 72) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
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
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": patient},
        "effectiveDateTime": "2026-01-05T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Server]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield Server(app, client)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(sub_settings(tmp_path)) as s:
        yield s
