"""Small, valid R4 resources the write workloads send (vital signs in the shape RPM devices use)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bench.client import Response

VITAL_SIGNS_CATEGORY = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
                "display": "Vital Signs",
            }
        ]
    }
]
# (LOINC code, display, UCUM code, unit text, low, high, decimals)
VITALS = [
    ("8867-4", "Heart rate", "/min", "beats/minute", 50, 120, 0),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%", 88, 100, 0),
    ("8310-5", "Body temperature", "Cel", "Cel", 35.5, 39.5, 1),
    ("9279-1", "Respiratory rate", "/min", "breaths/minute", 10, 30, 0),
    ("29463-7", "Body weight", "kg", "kg", 45, 120, 1),
]
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
TYPES = ("Patient", "Encounter", "Observation", "Device")


def _instant(rng: random.Random) -> str:
    t = _EPOCH + timedelta(seconds=rng.randrange(0, 365 * 86400))
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def patient(rng: random.Random, id: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:bench:mrn", "value": f"MRN-{rng.randrange(10**9)}"}],
        "active": True,
        "name": [{"family": rng.choice(["Rivera", "Okafor", "Lindqvist", "Tanaka"]),
                  "given": [rng.choice(["Ana", "Ben", "Chen", "Dara"])]}],
        "gender": rng.choice(["female", "male", "other", "unknown"]),
        "birthDate": f"{rng.randrange(1930, 2020)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
    }  # fmt: skip
    if id is not None:
        r["id"] = id
    return r


def device(rng: random.Random, patient_ref: str | None, id: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Device",
        "identifier": [{"system": "urn:bench:serial", "value": f"SN-{rng.randrange(10**9)}"}],
        "status": "active",
        "manufacturer": "Bench Devices",
        "deviceName": [{"name": "Pulse oximeter", "type": "user-friendly-name"}],
        "type": {"coding": [{"system": "http://snomed.info/sct", "code": "448703006",
                             "display": "Pulse oximeter"}]},
    }  # fmt: skip
    if patient_ref is not None:
        r["patient"] = {"reference": patient_ref}
    if id is not None:
        r["id"] = id
    return r


def encounter(rng: random.Random, patient_ref: str, id: str | None = None) -> dict[str, Any]:
    start = _instant(rng)
    r: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR",
                  "display": "virtual"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185317003",
                              "display": "Telephone encounter"}]}],
        "subject": {"reference": patient_ref},
        "period": {"start": start, "end": start},
    }  # fmt: skip
    if id is not None:
        r["id"] = id
    return r


def vital_sign(
    rng: random.Random, patient_ref: str, device_ref: str | None, id: str | None = None
) -> dict[str, Any]:
    code, display, ucum, unit, low, high, decimals = rng.choice(VITALS)
    value: float | int = round(rng.uniform(low, high), decimals)
    if decimals == 0:
        value = int(value)
    r: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": VITAL_SIGNS_CATEGORY,
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}],
                 "text": display},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": _instant(rng),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": ucum},
    }  # fmt: skip
    if device_ref is not None:
        r["device"] = {"reference": device_ref}
    if id is not None:
        r["id"] = id
    return r


def make(rtype: str, rng: random.Random, patient_ref: str, id: str | None = None) -> bytes:
    if rtype == "Patient":
        return orjson.dumps(patient(rng, id))
    if rtype == "Device":
        return orjson.dumps(device(rng, patient_ref, id))
    if rtype == "Encounter":
        return orjson.dumps(encounter(rng, patient_ref, id))
    return orjson.dumps(vital_sign(rng, patient_ref, None, id))


def created_ref(resp: Response) -> str | None:
    """'Type/id' from a create's Location header."""
    loc = resp.header("location")
    if not loc:
        return None
    tail = loc.split("/fhir/", 1)[-1].split("/")
    return f"{tail[0]}/{tail[1]}" if len(tail) >= 2 else None
