"""The validator against independent examples: the R4 vital-sign examples, every R4 example that
claims a profile, the HL7 Personal Health Device (PHD) IG examples, and the seed data."""

from __future__ import annotations

import collections
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.fhir.profiles import ProfileRegistry
from tests.profiles.conftest import CORE_SD, RPM_OBSERVATION, errors

ROOT = Path(__file__).resolve().parents[2]
VITAL_PROFILES = {  # LOINC code -> the core profile of that vital sign
    "85354-9": "bp", "8867-4": "heartrate", "29463-7": "bodyweight", "8310-5": "bodytemp",
    "2708-6": "oxygensat", "9279-1": "resprate", "8302-2": "bodyheight", "9843-4": "headcircum",
    "39156-5": "bmi", "85353-1": "vitalspanel",
}  # fmt: skip


def _nested(res: Any) -> Iterator[dict[str, Any]]:
    if isinstance(res, dict):
        yield res
        if res.get("resourceType") == "Bundle":
            for e in res.get("entry") or []:
                yield from _nested(e.get("resource"))


def _examples(shared_data: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    path = shared_data / "fhir-packages" / "hl7.fhir.r4.examples-4.0.1.tgz"
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                fh = tar.extractfile(member)
                if fh is not None:
                    doc = json.loads(fh.read())
                    for res in _nested(doc):
                        yield member.name.rsplit("/", 1)[-1], res


def _vital_profiles(obs: dict[str, Any]) -> list[str]:
    codes = [c.get("code") for c in obs.get("code", {}).get("coding", [])]
    return ["vitalsigns", *(VITAL_PROFILES[c] for c in codes if c in VITAL_PROFILES)]


def _is_vital_sign(obs: dict[str, Any]) -> bool:
    cats = [c.get("code") for cat in obs.get("category") or [] for c in cat.get("coding", [])]
    return "vital-signs" in cats


def test_r4_vital_sign_examples(shared_data: Path, registry: ProfileRegistry) -> None:
    """Every R4 example in the vital-signs category against vitalsigns and its own profile."""
    failed: dict[tuple[str, str], set[str]] = {}
    checked = 0
    for name, res in _examples(shared_data):
        if res.get("resourceType") != "Observation" or not _is_vital_sign(res):
            continue
        for p in _vital_profiles(res):
            checked += 1
            bad = errors(registry.validate(res, f"{CORE_SD}/{p}"))
            if bad:
                failed[(name, p)] = {x for i in bad for x in i.expression}
    assert checked == 31
    # The one example without an effective time (vital signs require one)
    assert failed == {
        ("Observation-f202.json", "vitalsigns"): {"Observation.effective[x]"},
        ("Observation-f202.json", "bodytemp"): {"Observation.effective[x]"},
    }


@pytest.mark.slow
def test_r4_examples_that_claim_a_profile(shared_data: Path, registry: ProfileRegistry) -> None:
    """1,943 claims (shareablevalueset, shareablecodesystem, vitalsigns, cqf-questionnaire)."""
    claims: collections.Counter[str] = collections.Counter()
    failed = []
    for name, res in _examples(shared_data):
        for url in registry.claimed(res):
            claims[url.rsplit("/", 1)[-1]] += 1
            if errors(registry.validate(res, url)):
                failed.append((name, url))
    assert claims["vitalsigns"] == 12 and sum(claims.values()) == 1943
    assert failed == []


def _phd_observations(shared_data: Path) -> list[tuple[str, dict[str, Any]]]:
    folder = shared_data / "phd-examples"
    out = []
    for path in sorted(folder.glob("*.json")):
        for res in _nested(json.loads(path.read_text())):
            if res.get("resourceType") == "Observation":
                out.append((path.name, res))
    return out


def test_phd_observations_conform_to_rpm_observation(
    shared_data: Path, registry: ProfileRegistry
) -> None:
    observations = _phd_observations(shared_data)
    with_all_three = [
        (n, o)
        for n, o in observations
        if "device" in o and "subject" in o and any(k.startswith("effective") for k in o)
    ]
    assert len(observations) == len(with_all_three) == 69
    failed = [(n, o.get("id")) for n, o in with_all_three if registry.validate(o, RPM_OBSERVATION)]
    assert failed == []
    subjects = collections.Counter(
        str(o["subject"].get("reference", "")).split("/")[0].split(":")[0]
        for _, o in with_all_three
    )
    # Patient/..., urn:uuid:... (a Patient in the Bundle) and Device/... (device-only readings)
    assert subjects == {"Patient": 62, "urn": 3, "Device": 4}


def test_phd_vital_signs_conform_to_the_core_profiles(
    shared_data: Path, registry: ProfileRegistry
) -> None:
    checked = collections.Counter[str]()
    for name, obs in _phd_observations(shared_data):
        if _is_vital_sign(obs):
            for p in _vital_profiles(obs):
                checked[p] += 1
                assert not errors(registry.validate(obs, f"{CORE_SD}/{p}")), (name, p)
    assert checked == {"vitalsigns": 31, "oxygensat": 14, "heartrate": 14, "bp": 2, "bodytemp": 1}


def test_seed_resources_conform_to_the_profiles_they_claim(registry: ProfileRegistry) -> None:
    claims: collections.Counter[str] = collections.Counter()
    problems = []
    for path in sorted((ROOT / "seed_data").glob("*.json")):
        for entry in json.loads(path.read_text())["entry"]:
            res = entry["resource"]
            for url in (res.get("meta") or {}).get("profile") or []:
                assert registry.knows(url), url
                claims[url.rsplit("/", 1)[-1]] += 1
                issues = registry.validate(res, url)
                if issues:  # not even a warning
                    problems.append((res["id"], url, [i.diagnostics for i in issues]))
    assert problems == []
    assert claims["rpm-device"] > 0 and claims["rpm-observation"] > 0
    assert claims["virtual-visit"] > 0 and claims["bp"] > 0


@pytest.mark.slow
def test_packaged_definitions_are_generated_from_the_packages(
    shared_data: Path, tmp_path: Path
) -> None:
    """fhir_server/fhir/definitions/profiles.json.gz is what tools/gen_profiles.py makes."""
    import gzip
    import subprocess
    import sys

    out = tmp_path / "profiles.json.gz"
    packages = shared_data / "fhir-packages"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "gen_profiles.py"),
            "--core", str(packages / "hl7.fhir.r4.core-4.0.1.tgz"),
            "--us-core", str(packages / "hl7.fhir.us.core-3.1.0.tgz"),
            "--out", str(out),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    packaged = ROOT / "fhir_server" / "fhir" / "definitions" / "profiles.json.gz"
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(packaged.read_bytes())
