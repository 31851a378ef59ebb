"""CRUD mix: create/read/update/delete weighted C10 R60 U25 D5 over Patient, Encounter,
Observation and Device, by concurrent clients.

Setup (not timed) creates a pool of each type through the API. Reads and updates pick a random
member of the pool, creates add to it, deletes take a member out of it before the DELETE is sent, so
no later request aims at a deleted resource. Updates are unconditional PUTs of a fresh body.
"""

from __future__ import annotations

import random
from typing import Any

from bench.client import Connection, Response
from bench.loadgen import Op, closed_loop
from bench.resources import TYPES, created_ref, make
from bench.server import Server

HEADERS = {"Content-Type": "application/fhir+json"}
WEIGHTS = {"create": 10, "read": 60, "update": 25, "delete": 5}
MIN_POOL = 10  # below this a delete becomes a create, so the pool never runs dry


class Pool:
    """Ids per type; O(1) random pick and removal."""

    def __init__(self) -> None:
        self.ids: dict[str, list[str]] = {t: [] for t in TYPES}

    def add(self, ref: str) -> None:
        rtype, _, id = ref.partition("/")
        if rtype in self.ids:
            self.ids[rtype].append(id)

    def pick(self, rtype: str, rng: random.Random) -> str:
        ids = self.ids[rtype]
        return ids[rng.randrange(len(ids))]

    def take(self, rtype: str, rng: random.Random) -> str:
        ids = self.ids[rtype]
        k = rng.randrange(len(ids))
        ids[k], ids[-1] = ids[-1], ids[k]
        return ids.pop()

    def sizes(self) -> dict[str, int]:
        return {t: len(v) for t, v in self.ids.items()}


async def _setup(conn: Connection, pool: Pool, per_type: int, rng: random.Random) -> None:
    for rtype in TYPES:  # Patients first: the others refer to them
        for _ in range(per_type):
            patient = "Patient/" + pool.pick("Patient", rng) if pool.ids["Patient"] else ""
            body = make(rtype, rng, patient or "Patient/unknown")
            resp = await conn.request("POST", f"/fhir/{rtype}", body, HEADERS)
            ref = created_ref(resp)
            if resp.status != 201 or ref is None:
                raise RuntimeError(f"CRUD setup: {rtype} create gave HTTP {resp.status}")
            pool.add(ref)


async def run(
    server: Server,
    *,
    concurrency: int = 16,
    pool_per_type: int = 200,
    max_requests: int,
    max_seconds: float,
) -> dict[str, Any]:
    pool = Pool()
    setup_conn = Connection(server.port)
    await _setup(setup_conn, pool, pool_per_type, random.Random(11))
    setup_conn.close()
    rngs = [random.Random(1000 + i) for i in range(concurrency)]
    kinds = list(WEIGHTS)
    weights = list(WEIGHTS.values())

    def on_create(resp: Response) -> None:
        ref = created_ref(resp) if resp.status == 201 else None
        if ref:
            pool.add(ref)

    def make_op(c: Connection, i: int) -> Op:
        rng = rngs[i]
        rtype = rng.choice(TYPES)
        kind = rng.choices(kinds, weights)[0]
        if kind == "delete" and len(pool.ids[rtype]) <= MIN_POOL:
            kind = "create"
        patient = "Patient/" + pool.pick("Patient", rng)
        label = f"{kind} {rtype}"
        if kind == "create":
            body = make(rtype, rng, patient)
            return label, c.prepare("POST", f"/fhir/{rtype}", body, HEADERS), on_create
        if kind == "read":
            return label, c.prepare("GET", f"/fhir/{rtype}/{pool.pick(rtype, rng)}"), None
        if kind == "update":
            id = pool.pick(rtype, rng)
            body = make(rtype, rng, patient, id)
            return label, c.prepare("PUT", f"/fhir/{rtype}/{id}", body, HEADERS), None
        id = pool.take(rtype, rng)
        return label, c.prepare("DELETE", f"/fhir/{rtype}/{id}"), None

    loop = await closed_loop(
        server,
        make_op,
        concurrency=concurrency,
        max_requests=max_requests,
        max_seconds=max_seconds,
    )
    summary = loop.summary()
    by_kind: dict[str, int] = {k: 0 for k in WEIGHTS}
    for label, v in loop.latencies.items():
        by_kind[label.split(" ")[0]] += len(v)
    return {
        "concurrency": concurrency,
        "weights": WEIGHTS,
        "types": list(TYPES),
        "pool_per_type_at_start": pool_per_type,
        "pool_at_end": pool.sizes(),
        "ok_by_kind": by_kind,
        **summary,
    }
