"""A synthetic RPM store for search measurements: N patients with a device each and `count`
vital-sign Observations spread over a year, written through the server's write path (meta,
extraction, index rows, group commit) but without validation, which the generated resources do not
need and which would make a million-row store take an hour to build.

Usage: python -m bench.synthetic_rpm DATA_DIR COUNT [--patients N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from typing import Any

from fhir_server.app import build_services
from fhir_server.interactions.common import prepare_write
from fhir_server.settings import Settings

VITALS = [
    ("8867-4", "/min", 60, 100),
    ("59408-5", "%", 90, 100),
    ("29463-7", "kg", 50, 120),
    ("2339-0", "mg/dL", 70, 200),
    ("8310-5", "Cel", 36, 38),
]
CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}


def reading(rnd: random.Random, patient: str, device: str, when: str) -> dict[str, Any]:
    """One vital-sign reading of a random kind, taken by `device` from `patient` at `when`."""
    code, unit, lo, hi = rnd.choice(VITALS)
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [CATEGORY],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "device": {"reference": f"Device/{device}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": round(rnd.uniform(lo, hi), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def observation(rnd: random.Random, patients: int) -> dict[str, Any]:
    p = rnd.randrange(patients)
    day, sec = rnd.randrange(365), rnd.randrange(86400)
    month, dom = 1 + day // 31 % 12, 1 + day % 28
    when = f"2025-{month:02d}-{dom:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"
    return reading(rnd, f"p{p}", f"d{p}", when)


async def build(data_dir: Path, count: int, patients: int) -> None:
    ctx = build_services(Settings(data_dir=data_dir, seed=False, validation_processes=0))
    await ctx.storage.open()
    rnd = random.Random(1)
    start = time.perf_counter()
    async with ctx.storage.transaction() as tx:
        for p in range(patients):
            name = {"family": f"Fam{p % 300}", "given": [f"G{p}"]}
            for rtype, rid, body in (
                ("Patient", f"p{p}", {"resourceType": "Patient", "name": [name]}),
                (
                    "Device",
                    f"d{p}",
                    {
                        "resourceType": "Device",
                        "status": "active",
                        "patient": {"reference": f"Patient/p{p}"},
                    },
                ),
            ):
                await tx.write(prepare_write(ctx, body, rtype, rid, 1, 0, "PUT", validated=True))
    done = 0
    while done < count:
        async with ctx.storage.transaction() as tx:
            for i in range(min(5000, count - done)):
                obs = observation(rnd, patients)
                write = prepare_write(
                    ctx, obs, "Observation", f"o{done + i}", 1, 0, "PUT", validated=True
                )
                await tx.write(write)
        done += min(5000, count - done)
        print(f"{done} observations, {done / (time.perf_counter() - start):.0f}/s", flush=True)
    await ctx.storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--patients", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(build(args.data_dir, args.count, args.patients))


if __name__ == "__main__":
    main()
