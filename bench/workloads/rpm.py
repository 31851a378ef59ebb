"""RPM writes: one vital-sign Observation per POST, the way device gateways send readings.

Each client is one gateway: it first creates its Patient and its Device (setup, not timed), then
POSTs Observations (LOINC code, UCUM valueQuantity, category vital-signs, `subject` and `device`
references to those two) as fast as the server answers.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from bench.client import Connection
from bench.loadgen import Op, closed_loop
from bench.resources import created_ref, device, patient, vital_sign
from bench.server import Server

HEADERS = {"Content-Type": "application/fhir+json"}


async def _create(conn: Connection, rtype: str, body: dict[str, Any]) -> str:
    resp = await conn.request("POST", f"/fhir/{rtype}", orjson.dumps(body), HEADERS)
    ref = created_ref(resp)
    if resp.status != 201 or ref is None:
        raise RuntimeError(f"RPM setup: creating a {rtype} gave HTTP {resp.status}: {resp.body!r}")
    return ref


async def run(
    server: Server, *, concurrency: int = 16, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    rng = random.Random(7)
    conn = Connection(server.port)
    pairs: list[tuple[str, str]] = []
    for _ in range(concurrency):
        p = await _create(conn, "Patient", patient(rng))
        d = await _create(conn, "Device", device(rng, p))
        pairs.append((p, d))
    conn.close()
    rngs = [random.Random(100 + i) for i in range(concurrency)]

    def make_op(c: Connection, i: int) -> Op:
        p, d = pairs[i]
        body = orjson.dumps(vital_sign(rngs[i], p, d))
        return "create Observation", c.prepare("POST", "/fhir/Observation", body, HEADERS), None

    loop = await closed_loop(
        server,
        make_op,
        concurrency=concurrency,
        max_requests=max_requests,
        max_seconds=max_seconds,
    )
    return {
        "concurrency": concurrency,
        "gateways": len(pairs),
        "prefer": "(none: the server's default, return=representation)",
        **loop.summary(),
    }
