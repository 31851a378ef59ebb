"""The demo data in seed_data/: reproducible, valid, self-contained, and as varied as documented.

The checks here measure the generated JSON on their own (days with readings, visit minutes, ...)
rather than trusting the generator's bookkeeping, and compare with the table in seed_data/README.md.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = ROOT / "seed_data"
GENERATOR = SEED_DIR / "generate.py"

# What seed_data/README.md documents for the committed files.
ANCHOR = dt.date(2026, 11, 1)
TZ = ZoneInfo("America/New_York")
FIRST_READING_DAY = ANCHOR - dt.timedelta(days=60)
RECENT_START = ANCHOR - dt.timedelta(days=30)
LAST_MONTH = (2026, 10)

Resource = dict[str, Any]

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DATETIME_WITH_OFFSET_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
MDC = "urn:iso:std:iso:11073:10101"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

# LOINC code -> UCUM code of the value, for every kind of reading.
VITAL_UNITS = {
    "8867-4": "/min",
    "59408-5": "%",
    "2339-0": "mg/dL",
    "29463-7": "kg",
    "8310-5": "Cel",
}
DEVICE_TYPES = {  # SNOMED CT -> IEEE 11073 device specialization
    "70665002": "528391",
    "448703006": "528388",
    "337414009": "528401",
    "19892000": "528399",
    "27991004": "528392",
}
INTERPRETATIONS = {"H", "HH", "L", "LL", "U"}


@cache
def bundles() -> dict[str, Resource]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SEED_DIR.glob("*.json"))
    }


@cache
def resources() -> tuple[Resource, ...]:
    return tuple(e["resource"] for b in bundles().values() for e in b["entry"])


@cache
def by_url() -> dict[str, Resource]:
    return {f"{r['resourceType']}/{r['id']}": r for r in resources()}


def of_type(resource_type: str) -> list[Resource]:
    return [r for r in resources() if r["resourceType"] == resource_type]


def codes(concept: Resource, system: str) -> set[str]:
    return {c["code"] for c in concept.get("coding", []) if c.get("system") == system}


def local(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).astimezone(TZ)


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def reading_days_last_30(patient_id: str) -> int:
    days = {
        local(o["effectiveDateTime"]).date()
        for o in of_type("Observation")
        if o["subject"]["reference"] == f"Patient/{patient_id}"
    }
    return sum(1 for d in days if RECENT_START <= d < ANCHOR)


def virtual_minutes_last_month(patient_id: str) -> int:
    """Finished virtual visits that start in the last calendar month, in the practice time zone."""
    total = 0
    for e in of_type("Encounter"):
        if e["subject"]["reference"] != f"Patient/{patient_id}":
            continue
        if e["status"] != "finished" or e["class"]["code"] != "VR":
            continue
        start, end = local(e["period"]["start"]), local(e["period"]["end"])
        if (start.year, start.month) == LAST_MONTH:
            total += round((end - start).total_seconds() / 60)
    return total


def rpm_patient_ids() -> list[str]:
    with_devices = {d["patient"]["reference"].split("/")[1] for d in of_type("Device")}
    return sorted(with_devices)


# --- Reproducible --------------------------------------------------------------------------------
def test_generator_reproduces_committed_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert generated == sorted(bundles()), "file list differs: regenerate seed_data"
    for name in generated:
        assert (tmp_path / name).read_bytes() == (SEED_DIR / name).read_bytes(), (
            f"{name} differs from a fresh run: run `python seed_data/generate.py` and commit"
        )


def test_file_layout_and_size() -> None:
    names = list(bundles())
    assert names == [
        "00-practice.json",
        *(f"10-patient-{i:02d}.json" for i in range(1, len(names) - 1)),
        "90-groups.json",
    ]
    total = 0
    for name in names:
        raw = (SEED_DIR / name).read_bytes()
        total += len(raw)
        # Compact JSON: one line plus the trailing newline.
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1, name
    assert total < 3_000_000


# --- Valid FHIR ----------------------------------------------------------------------------------
def test_bundles_are_idempotent_transactions() -> None:
    seen: set[str] = set()
    for name, bundle in bundles().items():
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction", name
        for entry in bundle["entry"]:
            r = entry["resource"]
            url = f"{r['resourceType']}/{r['id']}"
            assert ID_RE.match(r["id"]), url
            assert entry["request"] == {"method": "PUT", "url": url}
            assert url not in seen, f"{url} appears twice"
            seen.add(url)


def test_resources_validate_with_r4b_models() -> None:
    from fhir.resources.R4B import get_fhir_model_class

    for r in resources():
        get_fhir_model_class(r["resourceType"]).model_validate(r)


def test_no_empty_or_null_values() -> None:
    # FHIR JSON forbids empty objects, arrays and strings and nulls; the models do not check all.
    for r in resources():
        for path, node in walk(r):
            assert node is not None and node != [] and node != {} and node != "", f"{r['id']}{path}"


def test_every_reference_resolves() -> None:
    known = by_url()
    count = 0
    for r in resources():
        for path, node in walk(r):
            if path.endswith(".reference"):
                assert node in known, f"{r['id']}{path} -> {node}"
                count += 1
    assert count > 1000


def test_loading_in_file_name_order_never_meets_a_dangling_reference() -> None:
    loaded: set[str] = set()
    for name, bundle in bundles().items():  # sorted by name
        batch = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
        for entry in bundle["entry"]:
            for path, node in walk(entry["resource"]):
                if path.endswith(".reference"):
                    assert node in loaded | batch, f"{name}: {node} is loaded later"
        loaded |= batch


# --- Content -------------------------------------------------------------------------------------
def test_practice() -> None:
    assert len(of_type("Organization")) == 1
    practitioners = of_type("Practitioner")
    assert 4 <= len(practitioners) <= 5
    roles = of_type("PractitionerRole")
    assert {r["practitioner"]["reference"] for r in roles} == {
        f"Practitioner/{p['id']}" for p in practitioners
    }


def test_patients() -> None:
    patients = of_type("Patient")
    assert 18 <= len(patients) <= 22
    ages = []
    for p in patients:
        (mrn,) = [i for i in p["identifier"] if codes(i["type"], _V2_0203) == {"MR"}]
        assert mrn["system"].endswith("/mrn") and mrn["value"]
        assert p["telecom"] and p["address"] and p["gender"] in {"male", "female", "other"}
        born = dt.date.fromisoformat(p["birthDate"])
        ages.append((ANCHOR - born).days // 365)
    assert min(ages) < 40 and max(ages) > 80
    assert len({p["identifier"][0]["value"] for p in patients}) == len(patients)


def test_devices() -> None:
    kinds = set()
    for d in of_type("Device"):
        assert d["status"] == "active" and d["manufacturer"] and d["deviceName"]
        assert d["patient"]["reference"].startswith("Patient/")
        (snomed,) = codes(d["type"], SCT)
        assert codes(d["type"], MDC) == {DEVICE_TYPES[snomed]}
        kinds.add(snomed)
        assert any(codes(i["type"], _V2_0203) == {"SNO"} and i["value"] for i in d["identifier"])
    assert kinds == set(DEVICE_TYPES)


def test_observations_are_device_vital_signs() -> None:
    devices = {f"Device/{d['id']}": d for d in of_type("Device")}
    for o in of_type("Observation"):
        oid = o["id"]
        assert o["status"] == "final"
        assert any(
            codes(c, "http://terminology.hl7.org/CodeSystem/observation-category")
            == {"vital-signs"}
            for c in o["category"]
        ), oid
        when = o["effectiveDateTime"]
        assert DATETIME_WITH_OFFSET_RE.match(when), oid
        # Written in the practice zone: the offset is the zone's offset at that instant.
        assert dt.datetime.fromisoformat(when).utcoffset() == local(when).utcoffset(), oid
        assert FIRST_READING_DAY <= local(when).date() < ANCHOR, oid
        device = devices[o["device"]["reference"]]
        assert device["patient"] == o["subject"], oid
        loinc = codes(o["code"], LOINC)
        if "85354-9" in loinc:
            assert "valueQuantity" not in o
            components = {next(iter(codes(c["code"], LOINC))): c for c in o["component"]}
            assert set(components) == {"8480-6", "8462-4"}, oid
            quantities = [c["valueQuantity"] for c in components.values()]
            expected_unit = "mm[Hg]"
        else:
            (code,) = loinc - {"2708-6"}
            if code == "59408-5":
                assert "2708-6" in loinc, oid
            quantities = [o["valueQuantity"]]
            expected_unit = VITAL_UNITS[code]
        for q in quantities:
            assert q["system"] == UCUM and q["code"] == expected_unit and q["unit"], oid
            assert isinstance(q["value"], int | float) and not isinstance(q["value"], bool), oid
        for interp in o.get("interpretation", []):
            assert (
                codes(interp, "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation")
                <= INTERPRETATIONS
            )


def test_some_readings_are_abnormal() -> None:
    flagged = [o for o in of_type("Observation") if "interpretation" in o]
    assert 0.05 < len(flagged) / len(of_type("Observation")) < 0.5
    flagged_codes = {c for o in flagged for c in codes(o["code"], LOINC)}
    assert {"85354-9", "59408-5", "2339-0", "29463-7", "8310-5"} <= flagged_codes


def test_encounters() -> None:
    statuses: defaultdict[str, int] = defaultdict(int)
    for e in of_type("Encounter"):
        eid = e["id"]
        statuses[e["status"]] += 1
        assert e["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        assert e["class"]["code"] in {"VR", "AMB"}, eid
        assert e["type"] and e["serviceProvider"]["reference"].startswith("Organization/")
        start = local(e["period"]["start"])
        if e["status"] == "finished":
            minutes = (local(e["period"]["end"]) - start).total_seconds() / 60
            assert 5 <= minutes <= 40, eid
            assert e["length"]["value"] == minutes and e["length"]["code"] == "min"
            assert start.date() < ANCHOR
            assert any(
                p["individual"]["reference"].startswith("Practitioner/") for p in e["participant"]
            ), eid
        elif e["status"] == "planned":
            assert "end" not in e["period"] and start.date() > ANCHOR, eid
        else:
            assert e["status"] == "cancelled", eid
        for reason in e.get("reasonReference", []):
            obs = by_url()[reason["reference"]]
            assert obs["subject"] == e["subject"] and "interpretation" in obs, eid
            assert local(obs["effectiveDateTime"]) < start, eid
    assert statuses["finished"] > statuses["planned"] > 0
    virtual = [e for e in of_type("Encounter") if e["class"]["code"] == "VR"]
    assert len(virtual) > 2 * (len(of_type("Encounter")) - len(virtual)) > 0
    assert sum("reasonReference" in e for e in of_type("Encounter")) >= 5


def test_groups() -> None:
    groups = {g["id"]: g for g in of_type("Group")}
    assert len(groups) == 2
    members = {
        gid: [m["entity"]["reference"].split("/")[1] for m in g["member"]]
        for gid, g in groups.items()
    }
    for gid, g in groups.items():
        assert g["type"] == "person" and g["actual"] is True and g["name"]
        assert g["quantity"] == len(members[gid])
    rpm, panel = sorted(groups, key=lambda gid: -len(members[gid]))
    assert sorted(members[rpm]) == rpm_patient_ids()
    assert groups[rpm]["name"].startswith("RPM patients")
    assert set(members[panel]) < set(members[rpm])
    # Not every patient is in the RPM program.
    assert len(rpm_patient_ids()) < len(of_type("Patient"))


# --- Deliberate variety (seed_data/README.md) ----------------------------------------------------
def test_reading_day_bands() -> None:
    days = {pid: reading_days_last_30(pid) for pid in rpm_patient_ids()}
    assert any(n <= 1 for n in days.values()), "a patient with a single day or none"
    assert any(2 <= n <= 15 for n in days.values())
    assert any(n >= 16 for n in days.values())
    # The billing threshold itself on both sides.
    assert {15, 16} <= set(days.values())
    assert {0, 1} <= set(days.values())


def test_virtual_minutes_bands() -> None:
    minutes = {pid: virtual_minutes_last_month(pid) for pid in rpm_patient_ids()}
    values = set(minutes.values())
    assert any(m < 10 for m in values)
    assert any(10 <= m < 20 for m in values)
    assert any(20 <= m < 40 for m in values)
    assert any(m >= 40 for m in values)
    assert {10, 19, 20, 39, 40} <= values, "band edges"


def test_two_devices_and_a_device_started_mid_period() -> None:
    per_patient: defaultdict[str, list[str]] = defaultdict(list)
    for d in of_type("Device"):
        per_patient[d["patient"]["reference"]].append(d["id"])
    assert max(len(ids) for ids in per_patient.values()) >= 2
    first_reading: dict[str, dt.date] = {}
    for o in of_type("Observation"):
        day = local(o["effectiveDateTime"]).date()
        ref = o["device"]["reference"]
        first_reading[ref] = min(day, first_reading.get(ref, day))
    assert any(day > RECENT_START for day in first_reading.values())


def test_readme_table_matches_data() -> None:
    readme = (SEED_DIR / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and re.fullmatch(r"patient-\d\d", cells[0]):
            rows[cells[0]] = cells
    patients = sorted(p["id"] for p in of_type("Patient"))
    assert sorted(rows) == patients
    rpm = set(rpm_patient_ids())
    for pid in patients:
        # Columns: id, name, age, program, devices, days, days band, minutes, minutes band, notes
        cells = rows[pid]
        if pid in rpm:
            assert int(cells[5]) == reading_days_last_30(pid), pid
        assert int(cells[7]) == virtual_minutes_last_month(pid), pid


@pytest.mark.parametrize("name", ["00-practice.json", "90-groups.json"])
def test_shared_files_have_no_patient_data(name: str) -> None:
    types = {e["resource"]["resourceType"] for e in bundles()[name]["entry"]}
    assert not types & {"Patient", "Observation", "Encounter", "Device"}
