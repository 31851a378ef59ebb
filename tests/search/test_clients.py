"""Real FHIR client libraries as black-box checks of search paging.

A real server process (`python -m fhir_server serve`) holds 120 Observations of 3 patients; each
client pages through a search whose page size is well below its match count and must get every
match exactly once: `fhirpy` (async, `fetch_all`), `fhirclient` (SMART on FHIR, following `next`
links with `perform_resources_iter`) and `fhir-pyrate` (a pandas DataFrame of the bundles).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

PATIENTS = ("p1", "p2", "p3")
PER_PATIENT = 40
LOINC = "http://loinc.org"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _observation(i: int, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs-{patient}-{i:03d}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
        "valueQuantity": {
            "value": 60 + i,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _bundle() -> dict[str, Any]:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": p, "name": [{"family": f"Test{p}"}]} for p in PATIENTS
    ]
    resources += [_observation(i, p) for p in PATIENTS for i in range(PER_PATIENT)]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def _expected(patient: str) -> set[str]:
    return {f"obs-{patient}-{i:03d}" for i in range(PER_PATIENT)}


@pytest.fixture(scope="module")
def fhir_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server process on a free port with the Observations loaded; stopped at the end."""
    tmp = tmp_path_factory.mktemp("clients")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_")}
    env["FHIR_SERVER_AUTH"] = "off"  # these clients test search, not SMART (tests/auth does)
    root = Path(__file__).resolve().parents[2]
    log = (tmp / "server.log").open("wb")
    command = [sys.executable, "-m", "fhir_server", "serve", "--port", str(port)]
    command += ["--data-dir", str(tmp / "data"), "--no-seed"]
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {_tail(tmp / 'server.log')}")
            try:
                if httpx.get(f"{origin}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after 60 s: {_tail(tmp / 'server.log')}")
            time.sleep(0.2)
        base = f"{origin}/fhir"
        r = httpx.post(base, json=_bundle(), timeout=120)
        assert r.status_code == 200, r.text
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]


def _assert_each_once(ids: list[str], expected: set[str]) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"returned more than once: {duplicates}"
    assert set(ids) == expected, (
        f"missing {sorted(expected - set(ids))}, unexpected {sorted(set(ids) - expected)}"
    )


async def test_fhirpy_fetch_all_pages(fhir_base: str) -> None:
    from fhirpy import AsyncFHIRClient

    client = AsyncFHIRClient(fhir_base)
    search = client.resources("Observation").search(patient="p1").limit(9)  # 5 pages
    found = await search.fetch_all()
    _assert_each_once([r["id"] for r in found], _expected("p1"))
    everything = await client.resources("Observation").limit(25).fetch_all()  # 5 pages
    _assert_each_once([r["id"] for r in everything], set().union(*map(_expected, PATIENTS)))


def test_fhirclient_follows_next_links(fhir_base: str) -> None:
    from fhirclient import client
    from fhirclient.models.observation import Observation

    smart = client.FHIRClient(settings={"app_id": "search-tests", "api_base": fhir_base})
    search = Observation.where(struct={"patient": "p2", "_count": "9"})
    pages = list(search.perform_iter(smart.server))
    assert len(pages) == 5
    ids = [e.resource.id for page in pages for e in page.entry or ()]
    _assert_each_once(ids, _expected("p2"))


def test_fhir_pyrate_dataframe(fhir_base: str) -> None:
    from fhir_pyrate import Pirate

    with Pirate(base_url=fhir_base, auth=None, num_processes=1) as pirate:
        df = pirate.steal_bundles_to_dataframe(
            resource_type="Observation",
            request_params={"patient": "p3", "_count": 9, "_sort": "_id"},
        )
    _assert_each_once(list(df["id"]), _expected("p3"))
    assert len(df) == PER_PATIENT
