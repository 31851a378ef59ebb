"""Independent data through the real API: the official R4 examples, the HL7 PHD examples and a
sample of the Synthea transaction bundles (none of it written for this project).

Counts are printed (run with -s) so the README can quote them.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from fhir_server.app import create_app
from fhir_server.fhir.resource_types import resource_types
from tests.api.conftest import BASE, make_settings

SYNTHEA_SAMPLE = 12
# Accepted by the R4B models but not valid R4: its id has 67 characters (the limit is 64).
INVALID_EXAMPLES = {
    "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json"
}


def _exact(data: bytes | str) -> Any:
    """JSON with decimals kept as their text, so 1.50 and 1.5 compare different."""
    return json.loads(data, parse_float=lambda s: ("decimal", s))


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def _r4b_accepts(resource: dict[str, Any]) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    info = resource_types().get(resource.get("resourceType", ""))
    if info is None or not info.r4b_model:
        return False
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except (ValidationError, ValueError, TypeError, KeyError):
        return False
    return True


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path, validation_processes=2))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=120) as c:
            yield c


def _examples(shared: Path) -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(shared / "fhir-packages" / "hl7.fhir.r4.examples-4.0.1.tgz") as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(".json") and not m.name.endswith("package.json"):
                f = tar.extractfile(m)
                assert f is not None
                out.append((m.name.rsplit("/", 1)[-1], f.read()))
    return sorted(out)


async def test_official_examples_round_trip(shared_data: Path, api: httpx.AsyncClient) -> None:
    accepted_by_models = stored = 0
    refused: list[str] = []
    changed: list[str] = []
    by_type: Counter[str] = Counter()
    for name, raw in _examples(shared_data):
        res = json.loads(raw)
        if not isinstance(res, dict) or "id" not in res or not _r4b_accepts(res):
            continue
        if name in INVALID_EXAMPLES:
            continue
        accepted_by_models += 1
        rtype, rid = res["resourceType"], res["id"]
        r = await api.put(
            f"{rtype}/{rid}", content=raw, headers={"Content-Type": "application/fhir+json"}
        )
        if r.status_code not in (200, 201):
            refused.append(f"{name}: {r.status_code} {r.text[:300]}")
            continue
        stored += 1
        by_type[rtype] += 1
        back = await api.get(f"{rtype}/{rid}")
        if _without_meta(_exact(back.content)) != _without_meta(_exact(raw)):
            changed.append(name)
    print(
        f"\nofficial R4 examples: {accepted_by_models} accepted by the R4B models, "
        f"{stored} stored and read back, {len(refused)} refused, {len(changed)} changed"
    )
    assert not refused, "\n".join(refused[:20])
    assert not changed, changed[:20]
    assert stored > 5000


async def test_phd_examples_load(shared_data: Path, api: httpx.AsyncClient) -> None:
    loaded = 0
    problems: list[str] = []
    for path in sorted((shared_data / "phd-examples").glob("*.json")):
        res = json.loads(path.read_bytes())
        if res.get("resourceType") == "Bundle" and res.get("type") in ("transaction", "batch"):
            r = await api.post(
                "", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"}
            )
            ok = r.status_code == 200 and all(
                e["response"]["status"].startswith("2") for e in r.json().get("entry", [])
            )
        else:
            r = await api.put(
                f"{res['resourceType']}/{res['id']}",
                content=path.read_bytes(),
                headers={"Content-Type": "application/fhir+json"},
            )
            ok = r.status_code in (200, 201)
        if ok:
            loaded += 1
        else:
            problems.append(f"{path.name}: {r.status_code} {r.text[:300]}")
    print(f"\nPHD examples: {loaded} loaded, {len(problems)} refused")
    assert not problems, "\n".join(problems)


async def test_synthea_sample_loads(shared_data: Path, api: httpx.AsyncClient) -> None:
    folder = shared_data / "synthea-r4"
    first = sorted(folder.glob("practitionerInformation*.json.gz")) + sorted(
        folder.glob("hospitalInformation*.json.gz")
    )
    patients = sorted(p for p in folder.glob("*.json.gz") if p not in first)[:SYNTHEA_SAMPLE]
    resources = 0
    for path in [*first, *patients]:
        r = await api.post(
            "",
            content=gzip.decompress(path.read_bytes()),
            headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
        )
        assert r.status_code == 200, f"{path.name}: {r.text[:500]}"
        entries = r.json()["entry"]
        assert all(e["response"]["status"].startswith("20") for e in entries)
        resources += len(entries)
    # urn:uuid and conditional references were rewritten to stored resources
    r = await api.get("Observation", params={"_count": "50", "_include": "Observation:subject"})
    body = r.json()
    matches = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "match"]
    included = {e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "include"}
    assert matches
    for obs in matches:
        ref = obs["subject"]["reference"]
        assert ref.startswith("Patient/") and ref.split("/")[1] in included
        assert not ref.startswith("urn:")
    enc = (await api.get("Encounter", params={"_count": "5"})).json()["entry"][0]["resource"]
    for part in enc.get("participant", []):
        ind = part["individual"]["reference"]
        assert ind.startswith("Practitioner/"), ind
        assert (await api.get(ind)).status_code == 200
    count = (await api.get("Patient", params={"_summary": "count"})).json()["total"]
    print(
        f"\nSynthea: {len(patients)} patient bundles + {len(first)} shared bundles, {resources} resources, {count} patients"
    )
    assert count == len(patients)


async def test_invalid_entry_in_large_bundle_fails_the_transaction(api: httpx.AsyncClient) -> None:
    """Large Bundles are validated on the worker processes; errors still name the entry."""
    entries = [
        {
            "resource": {"resourceType": "Patient", "gender": "female"},
            "request": {"method": "POST", "url": "Patient"},
        }
        for _ in range(40)
    ]
    entries[33]["resource"]["gender"] = "not-a-gender"
    r = await api.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert "entry 33" in issue["diagnostics"]
    assert (await api.get("Patient", params={"_summary": "count"})).json()["total"] == 0
