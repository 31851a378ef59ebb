"""Loading the demo practice (seed_data/) into an empty store on first start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.interactions.context import FhirRequest, Services
from fhir_server.loader import LoadSummary, Send, load
from fhir_server.storage.base import Storage

log = logging.getLogger("fhir_server")
DEFAULT_SEED_DIR = Path(__file__).resolve().parent.parent / "seed_data"
SEED_LEASE = "seed"
SEED_LEASE_TTL = 60.0  # seconds; renewed while loading, so a crashed seeder frees it soon


def direct_sender(services: Services, base_url: str = "http://localhost/fhir") -> Send:
    """A Send that dispatches in-process, the way the HTTP layer would."""
    from fhir_server.interactions.router import dispatch

    async def send(method: str, path: str, body: Any) -> tuple[int, bytes]:
        headers = {"content-type": "application/fhir+json", "prefer": "return=minimal"}
        req = FhirRequest(method, path, [], headers, body, base_url)
        try:
            resp = await dispatch(services, req)
        except FhirError as err:
            from fhir_server.fhir import jsonio

            return err.status, jsonio.dumps(err.outcome())
        return resp.status, resp.body or b""

    return send


async def _renew(storage: Storage, owner: str) -> None:
    """Keep the seed lease while loading takes longer than its time to live."""
    while True:
        await asyncio.sleep(SEED_LEASE_TTL / 3)
        await storage.acquire_lease(SEED_LEASE, owner, SEED_LEASE_TTL)


async def seed_if_empty(services: Services, owner: str | None = None) -> LoadSummary | None:
    """Load seed_data/ into an empty store. Several server processes (on several hosts sharing a
    MongoDB) may start at once: the one holding the `seed` lease loads, the others skip."""
    seed_dir = services.settings.seed_dir or DEFAULT_SEED_DIR
    if not seed_dir.is_dir():
        log.warning("No seed data folder at %s; starting empty", seed_dir)
        return None
    storage = services.storage
    if await storage.count() > 0:
        return None
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not await storage.acquire_lease(SEED_LEASE, owner, SEED_LEASE_TTL):
        log.info("Another server process is loading the demo data; not seeding here")
        return None
    renew = asyncio.create_task(_renew(storage, owner))
    try:
        if await storage.count() > 0:  # seeded between the first count and the lease
            return None
        files = sorted(seed_dir.glob("*.json"))
        summary = await load(files, direct_sender(services))
    finally:
        renew.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renew
        await storage.release_lease(SEED_LEASE, owner)
    log.info("Loaded demo data from %s: %s", seed_dir, summary.line())
    for where, why in summary.refused[:10]:
        log.warning("Seed entry refused: %s: %s", where, why)
    return summary
