"""Loading the demo practice (seed_data/) into an empty store on first start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.interactions.context import FhirRequest, Services
from fhir_server.loader import LoadSummary, Send, load

log = logging.getLogger("fhir_server")
DEFAULT_SEED_DIR = Path(__file__).resolve().parent.parent / "seed_data"


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


async def seed_if_empty(services: Services) -> LoadSummary | None:
    seed_dir = services.settings.seed_dir or DEFAULT_SEED_DIR
    if not seed_dir.is_dir():
        log.warning("No seed data folder at %s; starting empty", seed_dir)
        return None
    if await services.storage.count() > 0:
        return None
    files = sorted(seed_dir.glob("*.json"))
    summary = await load(files, direct_sender(services))
    log.info("Loaded demo data from %s: %s", seed_dir, summary.line())
    for where, why in summary.refused[:10]:
        log.warning("Seed entry refused: %s: %s", where, why)
    return summary
