#!/usr/bin/env python3
"""Write the demo telehealth practice in ``seed_data/`` as FHIR R4 transaction Bundles.

The practice is a small remote-patient-monitoring (RPM) clinic: one Organization, five
clinicians, twenty patients (nineteen with home devices), 60 days of device readings, virtual and
in-person visits and two Groups. Every entry is ``PUT Type/id`` with a readable, stable id, so
loading the files twice leaves the server as it was after the first load.

Everything is derived from a fixed seed and one anchor date (``--anchor``, default 2026-11-01):
the 60 days of readings end the day before the anchor, "last month" is the calendar month before
the anchor's month, planned visits lie after the anchor. Clock times are in the practice time zone
(America/New_York). Running the script twice gives byte-identical files.

Standard library only, so it runs before the project is installed::

    python seed_data/generate.py [--anchor YYYY-MM-DD] [--out DIR] [--table]

``--table`` prints the Markdown table of patients by band that ``seed_data/README.md`` shows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

Resource = dict[str, Any]

# Changing the seed changes every value and serial number: regenerate the committed files then.
SEED = "riverbend-telehealth-seed-v1"
DEFAULT_ANCHOR = dt.date(2026, 11, 1)
DEFAULT_TIME_ZONE = "America/New_York"
READING_DAYS = 60  # readings cover the 60 days before the anchor
RECENT_DAYS = 30  # "most recent 30-day period" = the last 30 of them
EN_DASH = "\u2013"  # in the Group names; escaped here so the source stays ASCII

# --- Code systems --------------------------------------------------------------------------------
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MDC = "urn:iso:std:iso:11073:10101"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
DEGREE = "http://terminology.hl7.org/CodeSystem/v2-0360|2.7"
PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
NPI = "http://hl7.org/fhir/sid/us-npi"
BCP47 = "urn:ietf:bcp:47"
TZ_CODE = "http://hl7.org/fhir/StructureDefinition/tz-code"

# Identifier systems of the (fictional) practice live under the reserved .example domain.
PRACTICE_DOMAIN = "https://riverbend-telehealth.example"
MRN_SYSTEM = f"{PRACTICE_DOMAIN}/fhir/sid/mrn"

# The server's own profiles (profiles/) and the core R4 vital-signs profiles the data conforms to.
SERVER_SD = "https://fhir-server.dev/fhir/StructureDefinition"
CORE_SD = "http://hl7.org/fhir/StructureDefinition"
RPM_DEVICE = f"{SERVER_SD}/rpm-device"
RPM_OBSERVATION = f"{SERVER_SD}/rpm-observation"
VIRTUAL_VISIT = f"{SERVER_SD}/virtual-visit"
VIRTUAL_MODALITY = f"{SERVER_SD}/virtual-modality"
VIRTUAL_SERVICE = f"{SERVER_SD}/virtual-service-details"
MODALITY_SYSTEM = "https://fhir-server.dev/fhir/CodeSystem/virtual-modality"
# Encounter mode -> modality code (virtual-modality extension)
MODALITY = {
    "video": ("video", "Video"),
    "phone": ("audio-only", "Audio only"),
    "review": ("asynchronous", "Asynchronous"),
}
# LOINC code -> the core profile for that vital sign (besides vitalsigns itself)
CORE_VITAL_PROFILES = {
    "85354-9": "bp", "8867-4": "heartrate", "2708-6": "oxygensat", "29463-7": "bodyweight",
    "8310-5": "bodytemp",
}  # fmt: skip


def coding(system: str, code: str, display: str | None = None) -> Resource:
    c: Resource = {"system": system, "code": code}
    if display is not None:
        c["display"] = display
    return c


def concept(*codings: Resource, text: str | None = None) -> Resource:
    # FHIR forbids empty arrays: a text-only concept has no "coding" at all.
    cc: Resource = {"coding": list(codings)} if codings else {}
    if text is not None:
        cc["text"] = text
    return cc


def ref(resource_type: str, resource_id: str) -> Resource:
    return {"reference": f"{resource_type}/{resource_id}"}


def rng_for(*parts: object) -> random.Random:
    """A private generator per purpose (patient, device, ...).

    Seeding each purpose separately keeps a change in one patient from shifting the values of all
    the others, and ``random.Random`` seeded with a str is stable across runs and Python versions.
    """
    return random.Random(":".join([SEED, *(str(p) for p in parts)]))


# --- The practice --------------------------------------------------------------------------------
ORG_ID = "org-riverbend"
PRACTICE_NAME = "Riverbend Telehealth Associates"
PRACTICE_PHONE = "(614) 555-0100"


@dataclass(frozen=True)
class Clinician:
    key: str  # id suffix: practitioner-<key>, practitionerrole-<key>
    prefix: str
    given: str
    family: str
    gender: str
    degree: tuple[str, str]  # v2-0360 code, display
    role: tuple[str, str]  # practitioner-role code, display
    specialty: tuple[str, str] | None  # SNOMED CT practice setting
    role_text: str
    npi_base: str  # 9 digits; the 10th is the Luhn check digit

    @property
    def display(self) -> str:
        return f"{self.prefix} {self.given} {self.family}".strip()


CLINICIANS: tuple[Clinician, ...] = (
    Clinician(
        "chen", "Dr.", "Maya", "Chen", "female", ("MD", "Doctor of Medicine"),
        ("doctor", "Doctor"), ("419772000", "Family practice"),
        "Medical director, primary care", "123456789",
    ),
    Clinician(
        "okafor", "Dr.", "Samuel", "Okafor", "male", ("MD", "Doctor of Medicine"),
        ("doctor", "Doctor"), ("394579002", "Cardiology"),
        "Cardiologist, heart-failure and hypertension RPM", "123456790",
    ),
    Clinician(
        "raman", "Dr.", "Priya", "Raman", "female", ("DO", "Doctor of Osteopathy"),
        ("doctor", "Doctor"), ("394583002", "Endocrinology"),
        "Endocrinologist, diabetes RPM", "123456791",
    ),
    Clinician(
        "moreno", "", "Alicia", "Moreno", "female", ("NP", "Nurse Practitioner"),
        ("nurse", "Nurse"), ("419772000", "Family practice"),
        "Family nurse practitioner", "123456792",
    ),
    Clinician(
        "ellis", "", "Jordan", "Ellis", "male", ("RN", "Registered Nurse"),
        ("nurse", "Nurse"), None,
        "RPM nurse care manager", "123456793",
    ),
)  # fmt: skip
CLINICIAN_BY_KEY = {c.key: c for c in CLINICIANS}


def npi_with_check_digit(base9: str) -> str:
    """A 10-digit NPI whose last digit passes the Luhn check (80840 prefix), like real NPIs."""
    digits = [int(d) for d in "80840" + base9]
    total = 0
    # Luhn: double every second digit from the right, counting the (missing) check digit as first.
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return base9 + str((10 - total % 10) % 10)


# --- Devices and measurements --------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceKind:
    key: str  # device-<key>-NN
    snomed: tuple[str, str]
    mdc: tuple[str, str]  # IEEE 11073 device specialization profile
    text: str
    manufacturer: str
    model: str
    model_number: str
    serial_prefix: str


# Manufacturers and models are fictional; the codes are real.
DEVICE_KINDS: dict[str, DeviceKind] = {
    k.key: k
    for k in (
        DeviceKind(
            "bp", ("70665002", "Blood pressure cuff, device"),
            ("528391", "MDC_DEV_SPEC_PROFILE_BP"), "Home blood pressure monitor",
            "CardioSense Inc.", "CardioSense BP200 Cellular", "BP200-C", "CS2",
        ),
        DeviceKind(
            "oximeter", ("448703006", "Pulse oximeter"),
            ("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM"), "Fingertip pulse oximeter",
            "OxiLink Medical", "OxiLink 50 Bluetooth", "OL-50", "OXL",
        ),
        DeviceKind(
            "glucose", ("337414009", "Blood glucose meters"),
            ("528401", "MDC_DEV_SPEC_PROFILE_GLUCOSE"), "Blood glucose meter",
            "GlucoPoint Diagnostics", "GlucoPoint Connect", "GPC-3", "GPC",
        ),
        DeviceKind(
            "scale", ("19892000", "Scale, device"),
            ("528399", "MDC_DEV_SPEC_PROFILE_SCALE"), "Body weight scale",
            "CardioSense Inc.", "CardioSense WS10 Cellular Scale", "WS10-C", "CSW",
        ),
        DeviceKind(
            "thermometer", ("27991004", "Thermometer, device"),
            ("528392", "MDC_DEV_SPEC_PROFILE_TEMP"), "Oral thermometer",
            "ThermaLink Health", "ThermaLink T3 Bluetooth", "TL-T3", "TLT",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Quantity:
    ucum: str
    unit: str
    decimals: int  # 0 -> JSON integer, 1 -> one decimal place (e.g. 36.8)


MMHG = Quantity("mm[Hg]", "mmHg", 0)
PER_MIN = Quantity("/min", "beats/minute", 0)
PERCENT = Quantity("%", "%", 0)
MG_DL = Quantity("mg/dL", "mg/dL", 0)
KG = Quantity("kg", "kg", 1)
CEL = Quantity("Cel", "Cel", 1)

# The LOINC code first (what the core vital-signs profiles require), then the IEEE 11073 term a
# Personal Health Device would send, as in the HL7 PHD implementation guide.
CODE_BP = concept(
    coding(LOINC, "85354-9", "Blood pressure panel with all children optional"),
    coding(MDC, "150020", "MDC_PRESS_BLD_NONINV"),
    text="Blood pressure",
)
CODE_SYSTOLIC = concept(
    coding(LOINC, "8480-6", "Systolic blood pressure"),
    coding(MDC, "150021", "MDC_PRESS_BLD_NONINV_SYS"),
    text="Systolic blood pressure",
)
CODE_DIASTOLIC = concept(
    coding(LOINC, "8462-4", "Diastolic blood pressure"),
    coding(MDC, "150022", "MDC_PRESS_BLD_NONINV_DIA"),
    text="Diastolic blood pressure",
)
CODE_PULSE_BP = concept(
    coding(LOINC, "8867-4", "Heart rate"),
    coding(MDC, "149546", "MDC_PULS_RATE_NON_INV"),
    text="Heart rate",
)
CODE_PULSE_OXIMETER = concept(
    coding(LOINC, "8867-4", "Heart rate"),
    coding(MDC, "149530", "MDC_PULS_OXIM_PULS_RATE"),
    text="Heart rate",
)
CODE_SPO2 = concept(
    coding(LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    coding(LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
    coding(MDC, "150456", "MDC_PULS_OXIM_SAT_O2"),
    text="Oxygen saturation (SpO2)",
)
CODE_GLUCOSE = concept(
    coding(LOINC, "2339-0", "Glucose [Mass/volume] in Blood"),
    coding(MDC, "160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
    text="Blood glucose",
)
CODE_WEIGHT = concept(
    coding(LOINC, "29463-7", "Body weight"),
    coding(MDC, "188736", "MDC_MASS_BODY_ACTUAL"),
    text="Body weight",
)
CODE_TEMPERATURE = concept(
    coding(LOINC, "8310-5", "Body temperature"),
    coding(MDC, "150364", "MDC_TEMP_BODY"),
    text="Body temperature",
)
CATEGORY_VITAL_SIGNS = [
    concept(coding(OBS_CATEGORY, "vital-signs", "Vital Signs"), text="Vital Signs")
]

INTERPRETATION_DISPLAY = {
    "H": "High",
    "HH": "Critical high",
    "L": "Low",
    "LL": "Critical low",
    "U": "Significant change up",
}
SEVERITY = {"HH": 3, "LL": 3, "H": 2, "L": 2, "U": 1}


def interpret(measure: str, value: float) -> str | None:
    """Home-monitoring alert thresholds (a typical RPM program's, not a clinical guideline)."""
    thresholds: dict[str, tuple[tuple[float, str], ...]] = {
        # (limit, code): the first matching rule wins; "<" limits are negative to share one loop.
        "systolic": ((180, "HH"), (140, "H"), (-90, "L")),
        "diastolic": ((120, "HH"), (90, "H"), (-60, "L")),
        "pulse": ((101, "H"), (-50, "L")),
        "spo2": ((-88, "LL"), (-92, "L")),
        "glucose": ((300, "HH"), (181, "H"), (-54, "LL"), (-70, "L")),
        "temperature": ((38.0, "H"), (-35.0, "L")),
    }
    for limit, code in thresholds.get(measure, ()):
        if (limit >= 0 and value >= limit) or (limit < 0 and value < -limit):
            return code
    return None


def interpretation(code: str) -> list[Resource]:
    return [concept(coding(INTERPRETATION, code, INTERPRETATION_DISPLAY[code]))]


# --- The patients --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceSpec:
    kind: str
    # Day of "last month" on which the device was issued; None = in use before the readings start.
    issued_on_day: int | None = None


@dataclass(frozen=True)
class Episode:
    """A few days of worse values (exacerbation, fluid gain, fever): alerts that prompt a visit."""

    first_day: int  # day of last month
    days: int
    shift: Mapping[str, float]


@dataclass(frozen=True)
class Visit:
    when: str  # "last" (last calendar month), "prior" (month before it), "planned" (after anchor)
    day: int  # day of that month, or for "planned" days after the anchor
    minutes: int  # length of a finished visit (expected length of a planned one)
    mode: str  # video | phone | review (virtual: ENCOUNTER_TYPES) or office (in person)
    clinician: str
    reason: str
    prompted: bool = False  # reasonReference -> the latest abnormal reading of the week before
    time: str | None = None  # "HH:MM" practice time; a random office-hours time if None
    status: str | None = None  # override, e.g. "cancelled"


@dataclass(frozen=True)
class PatientSpec:
    nn: int
    given: str
    family: str
    gender: str
    age: int  # at the anchor date
    street: str
    town: tuple[str, str]  # city, ZIP (all in Ohio, around the practice)
    clinician: str  # generalPractitioner
    program: str  # why the patient is monitored
    visits: tuple[Visit, ...]
    devices: tuple[DeviceSpec, ...] = ()  # none: a telehealth patient outside the RPM program
    recent_days: int = 0  # days with readings in the last 30 days before the anchor
    prior_days: int = 0  # days with readings in the 30 days before those
    baseline: Mapping[str, float] = field(default_factory=dict)  # typical value per measure
    episodes: tuple[Episode, ...] = ()
    # Days (counted back from the anchor: 1 = the day before it) that must have readings.
    forced_days_before_anchor: tuple[int, ...] = ()
    language: str = "en-US"
    mobile: bool = True
    note: str = ""  # README remark

    @property
    def id(self) -> str:
        return f"patient-{self.nn:02d}"


def v(
    when: str, day: int, minutes: int, mode: str, clinician: str, reason: str, **kw: Any
) -> Visit:
    return Visit(when, day, minutes, mode, clinician, reason, **kw)


REVIEW = "Monthly RPM data review"
# The variety is deliberate; seed_data/README.md shows the resulting table. Minutes bands count
# finished virtual visits in the last calendar month (practice time zone); days bands count the days
# with any reading in the 30 days before the anchor.
PATIENTS: tuple[PatientSpec, ...] = (
    PatientSpec(
        1, "Robert", "Thompson", "male", 72, "1482 Maple Ridge Dr", ("Columbus", "43214"),
        "chen", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=30, prior_days=29,
        baseline={"systolic": 146, "diastolic": 90, "pulse": 70},
        visits=(
            v("prior", 16, 20, "video", "chen", REVIEW),
            v("last", 14, 20, "video", "chen", "Elevated home blood pressure", prompted=True),
            v("last", 28, 15, "review", "ellis", REVIEW),
            v("planned", 5, 20, "video", "chen", "Medication follow-up"),
        ),
        note="Reads every day.",
    ),
    PatientSpec(
        2, "Linda", "Martinez", "female", 68, "77 Harrison Ave", ("Grove City", "43123"),
        "okafor", "Heart failure and hypertension",
        devices=(DeviceSpec("bp"), DeviceSpec("scale")), recent_days=27, prior_days=28,
        baseline={"systolic": 136, "diastolic": 84, "pulse": 78, "weight": 74.2},
        visits=(
            v("prior", 9, 30, "video", "okafor", "Heart-failure follow-up"),
            v("last", 9, 25, "video", "okafor", "Elevated home blood pressure", prompted=True),
            v("last", 23, 20, "phone", "ellis", REVIEW),
            v("planned", 4, 25, "video", "okafor", "Heart-failure follow-up"),
        ),
        language="es", note="Two devices (cuff and scale); prefers Spanish.",
    ),
    PatientSpec(
        3, "James", "Wilson", "male", 59, "310 Oak Hollow Ln", ("Westerville", "43081"),
        "raman", "Type 2 diabetes",
        devices=(DeviceSpec("glucose"),), recent_days=22, prior_days=25,
        baseline={"glucose": 168},
        visits=(
            v("prior", 22, 15, "video", "raman", REVIEW),
            v("last", 22, 12, "phone", "raman", "High home glucose readings", prompted=True),
        ),
    ),
    PatientSpec(
        4, "Patricia", "Johnson", "female", 77, "52 Willow Bend Ct", ("Dublin", "43017"),
        "chen", "COPD",
        devices=(DeviceSpec("oximeter"),), recent_days=16, prior_days=20,
        baseline={"spo2": 94, "pulse": 84},
        episodes=(Episode(9, 4, {"spo2": -4, "pulse": 12}),),
        visits=(
            v("last", 13, 20, "video", "chen", "Low oxygen saturation at home", prompted=True),
            v("planned", 10, 20, "video", "chen", "COPD follow-up"),
        ),
        note="Exactly 16 days; exactly 20 minutes.",
    ),
    PatientSpec(
        5, "Michael", "Brown", "male", 64, "2290 Sunbury Rd", ("Columbus", "43219"),
        "okafor", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=15, prior_days=18,
        baseline={"systolic": 132, "diastolic": 84, "pulse": 66},
        visits=(
            v("prior", 12, 25, "video", "okafor", "Hypertension follow-up"),
            v("last", 7, 10, "phone", "ellis", REVIEW),
            v("last", 21, 9, "phone", "ellis", "Reminder to take daily readings"),
        ),
        note="Exactly 15 days; 19 minutes (one short of 20).",
    ),
    PatientSpec(
        6, "Barbara", "Davis", "female", 81, "19 Cherry St", ("Worthington", "43085"),
        "raman", "Type 2 diabetes",
        devices=(DeviceSpec("glucose"),), recent_days=9, prior_days=14,
        baseline={"glucose": 142},
        visits=(
            v("prior", 18, 20, "video", "raman", "Diabetes follow-up"),
            v("last", 17, 5, "review", "ellis", REVIEW),
        ),
        mobile=False,
    ),
    PatientSpec(
        7, "William", "Garcia", "male", 55, "845 Parkview Blvd", ("Reynoldsburg", "43068"),
        "moreno", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=1, prior_days=12,
        forced_days_before_anchor=(30,),
        baseline={"systolic": 134, "diastolic": 88, "pulse": 76},
        visits=(v("prior", 25, 25, "video", "moreno", "Hypertension follow-up"),),
        note="One day only, the first day of the 30-day window; no visit last month.",
    ),
    PatientSpec(
        8, "Elizabeth", "Nguyen", "female", 46, "66 Beacon Hill Rd", ("Gahanna", "43230"),
        "chen", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=0, prior_days=6,
        forced_days_before_anchor=(31, 32, 33),
        baseline={"systolic": 132, "diastolic": 84, "pulse": 74},
        visits=(
            v("prior", 8, 10, "phone", "ellis", REVIEW),
            v("last", 19, 8, "phone", "ellis", "No readings received; device check"),
            v("planned", 3, 15, "video", "ellis", "Device troubleshooting"),
        ),
        note="No reading in the window; the last one is on the day before it.",
    ),
    PatientSpec(
        9, "David", "Lee", "male", 70, "4021 Kenny Rd", ("Columbus", "43220"),
        "chen", "COPD",
        devices=(DeviceSpec("oximeter"), DeviceSpec("thermometer", issued_on_day=15)),
        recent_days=24, prior_days=26,
        baseline={"spo2": 95, "pulse": 80, "temperature": 36.7},
        episodes=(Episode(17, 4, {"spo2": -4, "pulse": 12, "temperature": 1.5}),),
        visits=(
            v("last", 8, 15, "video", "chen", REVIEW),
            v("last", 20, 15, "video", "chen", "Low oxygen saturation and fever", prompted=True),
            v("last", 28, 10, "phone", "ellis", "Post-exacerbation check"),
        ),
        note="Thermometer issued mid-period; exactly 40 minutes.",
    ),
    PatientSpec(
        10, "Jennifer", "Walker", "female", 38, "908 Schrock Rd", ("Westerville", "43081"),
        "moreno", "Chronic hypertension",
        devices=(DeviceSpec("bp"),), recent_days=20, prior_days=22,
        baseline={"systolic": 130, "diastolic": 86, "pulse": 82},
        visits=(v("last", 15, 10, "video", "moreno", REVIEW),),
        note="Exactly 10 minutes.",
    ),
    PatientSpec(
        11, "Richard", "Hall", "male", 83, "12 Riverside Dr", ("Hilliard", "43026"),
        "okafor", "Heart failure",
        devices=(DeviceSpec("scale"),), recent_days=29, prior_days=28,
        baseline={"weight": 88.6},
        episodes=(Episode(21, 4, {"weight": 2.6}),),
        visits=(
            v("prior", 15, 20, "video", "okafor", "Heart-failure follow-up"),
            v("last", 24, 30, "video", "okafor", "Weight gain over three days", prompted=True),
            v("last", 27, 15, "phone", "ellis", "Diuretic adjustment check"),
            v("last", 31, 10, "phone", "okafor", "After-hours call about swelling", time="20:30"),
            v("planned", 6, 20, "video", "okafor", "Heart-failure follow-up"),
        ),
        note="A call at 20:30 on the month's last evening (already the next month in UTC).",
    ),
    PatientSpec(
        12, "Susan", "Allen", "female", 61, "2750 Bethel Rd", ("Columbus", "43220"),
        "raman", "Type 2 diabetes (new enrollee)",
        devices=(DeviceSpec("glucose", issued_on_day=12),), recent_days=18, prior_days=0,
        baseline={"glucose": 176},
        visits=(
            v("last", 12, 30, "video", "raman", "RPM enrollment and device setup"),
            v("planned", 12, 20, "video", "raman", "Diabetes follow-up"),
        ),
        note="Device issued mid-period; no readings before it.",
    ),
    PatientSpec(
        13, "Joseph", "Young", "male", 49, "530 Cleveland Ave", ("Columbus", "43215"),
        "moreno", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=12, prior_days=15,
        baseline={"systolic": 134, "diastolic": 86, "pulse": 70},
        visits=(
            v("prior", 10, 10, "phone", "moreno", REVIEW),
            v("last", 6, 25, "office", "moreno", "Blood pressure check in clinic"),
            v("last", 26, 7, "phone", "ellis", REVIEW),
        ),
        note="Also a 25-minute in-person visit (not virtual).",
    ),
    PatientSpec(
        14, "Margaret", "King", "female", 88, "7 Lakeview Ter", ("Delaware", "43015"),
        "chen", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=25, prior_days=24,
        baseline={"systolic": 136, "diastolic": 76, "pulse": 68},
        visits=(
            v("last", 13, 30, "office", "chen", "Annual wellness visit"),
            v("last", 21, 20, "video", "chen", REVIEW, status="cancelled"),
            v("planned", 18, 30, "office", "chen", "Blood pressure check in clinic"),
        ),
        mobile=False, note="Only an in-person visit and a cancelled video visit.",
    ),
    PatientSpec(
        15, "Thomas", "Wright", "male", 66, "1125 Granville St", ("Newark", "43055"),
        "okafor", "Heart failure",
        devices=(DeviceSpec("scale"),), recent_days=5, prior_days=10,
        baseline={"weight": 102.4},
        visits=(
            v("last", 10, 20, "office", "okafor", "Heart-failure follow-up in clinic"),
            v("last", 29, 19, "video", "okafor", REVIEW),
        ),
        note="19 virtual minutes; 39 if the in-person visit were wrongly counted.",
    ),
    PatientSpec(
        16, "Karen", "Lopez", "female", 57, "3380 Refugee Rd", ("Columbus", "43232"),
        "okafor", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=30, prior_days=29,
        baseline={"systolic": 132, "diastolic": 82, "pulse": 74},
        visits=(
            v("prior", 19, 15, "phone", "ellis", REVIEW),
            v("last", 3, 22, "video", "okafor", "Hypertension follow-up"),
            v("last", 30, 18, "phone", "ellis", REVIEW),
        ),
        note="Exactly 40 minutes.",
    ),
    PatientSpec(
        17, "Charles", "Hill", "male", 74, "41 Stelzer Rd", ("Columbus", "43219"),
        "chen", "COPD",
        devices=(DeviceSpec("oximeter"), DeviceSpec("thermometer")), recent_days=3, prior_days=8,
        baseline={"spo2": 93, "pulse": 86, "temperature": 36.8},
        visits=(
            v("last", 11, 6, "phone", "ellis", "Reminder to take daily readings"),
            v("last", 25, 6, "phone", "ellis", REVIEW),
        ),
        note="Two devices.",
    ),
    PatientSpec(
        18, "Aisha", "Patel", "female", 29, "260 W 3rd Ave", ("Columbus", "43201"),
        "raman", "Type 1 diabetes",
        devices=(DeviceSpec("glucose"),), recent_days=28, prior_days=27,
        baseline={"glucose": 150},
        episodes=(Episode(13, 4, {"glucose": -75}),),
        visits=(
            v("last", 16, 25, "video", "raman", "Low home glucose readings", prompted=True),
            v("planned", 9, 20, "video", "raman", "Diabetes follow-up"),
        ),
    ),
    PatientSpec(
        19, "Daniel", "Green", "male", 52, "1801 Brice Rd", ("Reynoldsburg", "43068"),
        "moreno", "Hypertension",
        devices=(DeviceSpec("bp"),), recent_days=19, prior_days=21,
        baseline={"systolic": 134, "diastolic": 86, "pulse": 72},
        # Ran out of medication for a few days.
        episodes=(Episode(22, 4, {"systolic": 16, "diastolic": 8}),),
        visits=(
            v("prior", 23, 20, "video", "moreno", "Hypertension follow-up"),
            v("last", 2, 10, "review", "ellis", REVIEW),
            v("last", 16, 10, "phone", "ellis", REVIEW),
            v("last", 27, 19, "video", "moreno", "Elevated home blood pressure", prompted=True),
        ),
        note="39 minutes (one short of 40).",
    ),
    PatientSpec(
        20, "Maria", "Adams", "female", 34, "95 E Main St", ("New Albany", "43054"),
        "moreno", "Telehealth only, not in the RPM program",
        visits=(
            v("prior", 14, 20, "video", "moreno", "Anxiety follow-up"),
            v("last", 20, 30, "video", "moreno", "Anxiety follow-up"),
            v("planned", 16, 20, "video", "moreno", "Anxiety follow-up"),
        ),
        note="No devices; not in the RPM Group.",
    ),
)  # fmt: skip

ENCOUNTER_TYPES = {
    "video": ("448337001", "Telemedicine consultation with patient", "Video visit"),
    "phone": ("185317003", "Telephone encounter", "Telephone visit"),
    "review": ("185316007", "Indirect encounter", "RPM data review"),
    "office": ("390906007", "Follow-up encounter", "Office visit"),
}
ENCOUNTER_CLASSES = {
    "virtual": coding(ACT_CODE, "VR", "virtual"),
    "office": coding(ACT_CODE, "AMB", "ambulatory"),
}


# --- Dates ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calendar:
    """All dates and instants, derived from the anchor date in the practice time zone."""

    anchor: dt.date
    tz: ZoneInfo

    @property
    def first_reading_day(self) -> dt.date:
        return self.anchor - dt.timedelta(days=READING_DAYS)

    @property
    def recent_start(self) -> dt.date:
        return self.anchor - dt.timedelta(days=RECENT_DAYS)

    def reading_days(self) -> list[dt.date]:
        return [self.first_reading_day + dt.timedelta(days=i) for i in range(READING_DAYS)]

    @property
    def last_month(self) -> dt.date:
        """First day of the last complete calendar month before the anchor."""
        return (self.anchor.replace(day=1) - dt.timedelta(days=1)).replace(day=1)

    @property
    def prior_month(self) -> dt.date:
        return (self.last_month - dt.timedelta(days=1)).replace(day=1)

    @staticmethod
    def day_of(month: dt.date, day: int) -> dt.date:
        """Day ``day`` of ``month``, clamped to the month's length (matters for other anchors)."""
        next_month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return month.replace(day=min(day, (next_month - month).days))

    def at(self, day: dt.date, hour: int, minute: int, second: int = 0) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=self.tz)


def iso(instant: dt.datetime) -> str:
    return instant.isoformat(timespec="seconds")


def quantity(value: float, q: Quantity) -> Resource:
    number: float = round(value) if q.decimals == 0 else round(value, q.decimals)
    return {"value": number, "unit": q.unit, "system": UCUM, "code": q.ucum}


# --- Resources -----------------------------------------------------------------------------------
def organization() -> Resource:
    return {
        "resourceType": "Organization",
        "id": ORG_ID,
        "identifier": [{"system": NPI, "value": npi_with_check_digit("198765432")}],
        "active": True,
        "type": [concept(coding(ORG_TYPE, "prov", "Healthcare Provider"))],
        "name": PRACTICE_NAME,
        "telecom": [
            {"system": "phone", "value": PRACTICE_PHONE, "use": "work"},
            {"system": "email", "value": "care@riverbend-telehealth.example", "use": "work"},
            {"system": "url", "value": PRACTICE_DOMAIN, "use": "work"},
        ],
        "address": [
            {
                "use": "work",
                "line": ["250 Riverbend Pkwy", "Suite 300"],
                "city": "Columbus",
                "state": "OH",
                "postalCode": "43215",
                "country": "US",
            }
        ],
    }


def practitioner(c: Clinician, index: int) -> Resource:
    name: Resource = {"use": "official", "family": c.family, "given": [c.given]}
    if c.prefix:
        name["prefix"] = [c.prefix]
    name["suffix"] = [c.degree[0]]
    return {
        "resourceType": "Practitioner",
        "id": f"practitioner-{c.key}",
        "identifier": [{"system": NPI, "value": npi_with_check_digit(c.npi_base)}],
        "active": True,
        "name": [name],
        "telecom": [
            {"system": "phone", "value": f"(614) 555-01{50 + index:02d}", "use": "work"},
            {
                "system": "email",
                "value": f"{c.given[0].lower()}.{c.family.lower()}@riverbend-telehealth.example",
                "use": "work",
            },
        ],
        "gender": c.gender,
        "qualification": [{"code": concept(coding(DEGREE, *c.degree), text=c.degree[0])}],
    }


def practitioner_role(c: Clinician) -> Resource:
    role: Resource = {
        "resourceType": "PractitionerRole",
        "id": f"practitionerrole-{c.key}",
        "active": True,
        "practitioner": {**ref("Practitioner", f"practitioner-{c.key}"), "display": c.display},
        "organization": {**ref("Organization", ORG_ID), "display": PRACTICE_NAME},
        "code": [concept(coding(PRACTITIONER_ROLE, *c.role), text=c.role_text)],
    }
    if c.specialty:
        role["specialty"] = [concept(coding(SCT, *c.specialty))]
    role["telecom"] = [{"system": "phone", "value": PRACTICE_PHONE, "use": "work"}]
    role["availableTime"] = [
        {
            "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
            "availableStartTime": "08:30:00",
            "availableEndTime": "17:00:00",
        }
    ]
    return role


def patient(spec: PatientSpec, cal: Calendar) -> Resource:
    rng = rng_for("patient", spec.nn)
    # A birthday between 1 and 360 days before the anchor's date: the age at the anchor is exact.
    try:
        same_day = cal.anchor.replace(year=cal.anchor.year - spec.age)
    except ValueError:  # 29 February
        same_day = cal.anchor.replace(year=cal.anchor.year - spec.age, day=28)
    birth = same_day - dt.timedelta(days=rng.randint(1, 360))
    phone = f"(614) 555-01{spec.nn:02d}"
    telecom: list[Resource] = [
        {"system": "phone", "value": phone, "use": "mobile" if spec.mobile else "home", "rank": 1}
    ]
    if spec.mobile:
        telecom.append(
            {
                "system": "email",
                "value": f"{spec.given.lower()}.{spec.family.lower()}@example.com",
                "use": "home",
            }
        )
    languages = {"en-US": "English (United States)", "es": "Spanish"}
    clinician = CLINICIAN_BY_KEY[spec.clinician]
    return {
        "resourceType": "Patient",
        "id": spec.id,
        # The patient's home time zone: $rpm-billing counts reading days and months in it.
        "extension": [{"url": TZ_CODE, "valueCode": str(cal.tz.key)}],
        "identifier": [
            {
                "use": "usual",
                "type": concept(coding(IDENTIFIER_TYPE, "MR", "Medical record number"), text="MRN"),
                "system": MRN_SYSTEM,
                "value": f"RTA-{100200 + spec.nn * 17}",
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": spec.family, "given": [spec.given]}],
        "telecom": telecom,
        "gender": spec.gender,
        "birthDate": birth.isoformat(),
        "address": [
            {
                "use": "home",
                "type": "physical",
                "line": [spec.street],
                "city": spec.town[0],
                "state": "OH",
                "postalCode": spec.town[1],
                "country": "US",
            }
        ],
        "communication": [
            {
                "language": concept(
                    coding(BCP47, spec.language, languages[spec.language]),
                    text=languages[spec.language],
                ),
                "preferred": True,
            }
        ],
        "generalPractitioner": [
            {**ref("Practitioner", f"practitioner-{clinician.key}"), "display": clinician.display}
        ],
        "managingOrganization": {**ref("Organization", ORG_ID), "display": PRACTICE_NAME},
    }


def device_id(kind: str, nn: int) -> str:
    return f"device-{kind}-{nn:02d}"


def device(spec: PatientSpec, d: DeviceSpec, cal: Calendar) -> Resource:
    kind = DEVICE_KINDS[d.kind]
    serial = f"{kind.serial_prefix}-{rng_for('serial', spec.nn, d.kind).getrandbits(32):08X}"
    slug = kind.manufacturer.split()[0].lower()
    resource: Resource = {
        "resourceType": "Device",
        "id": device_id(d.kind, spec.nn),
        "meta": {"profile": [RPM_DEVICE]},
        "identifier": [
            {
                "type": concept(coding(IDENTIFIER_TYPE, "SNO", "Serial Number")),
                "system": f"https://{slug}.example/sid/serial",
                "value": serial,
            }
        ],
        "status": "active",
        "manufacturer": kind.manufacturer,
        "serialNumber": serial,
        "deviceName": [
            {"name": kind.model, "type": "model-name"},
            {"name": kind.text, "type": "user-friendly-name"},
        ],
        "modelNumber": kind.model_number,
        "type": concept(coding(SCT, *kind.snomed), coding(MDC, *kind.mdc), text=kind.text),
        "specialization": [{"systemType": concept(coding(MDC, *kind.mdc)), "version": "1"}],
        "patient": ref("Patient", spec.id),
        "owner": ref("Organization", ORG_ID),
    }
    if d.issued_on_day is not None:
        # R4 Device has no period of use; the note says when it reached the patient.
        issued = Calendar.day_of(cal.last_month, d.issued_on_day)
        resource["note"] = [{"text": f"Issued to the patient on {issued.isoformat()}."}]
    return resource


def observation_profiles(code: Resource) -> list[str]:
    """The RPM observation profile; for vital signs also the core vitalsigns profile and the one
    for that vital sign (bp, heartrate, ...). Blood glucose is not a core vital sign."""
    loinc = [c["code"] for c in code["coding"] if c["system"] == LOINC]
    specific = [f"{CORE_SD}/{CORE_VITAL_PROFILES[c]}" for c in loinc if c in CORE_VITAL_PROFILES]
    return [RPM_OBSERVATION, f"{CORE_SD}/vitalsigns", *specific] if specific else [RPM_OBSERVATION]


@dataclass
class Reading:
    """One generated Observation and what the visits need to know about it."""

    instant: dt.datetime
    resource: Resource
    abnormal: bool  # has an interpretation: an alert that can prompt a visit


@dataclass
class ReadingContext:
    spec: PatientSpec
    cal: Calendar
    rng: random.Random
    readings: list[Reading] = field(default_factory=list)
    weights: list[tuple[dt.date, float]] = field(default_factory=list)

    def level(self, measure: str, day: dt.date) -> float:
        """The patient's baseline for ``measure``, shifted during an episode."""
        value = float(self.spec.baseline[measure])
        for ep in self.spec.episodes:
            start = Calendar.day_of(self.cal.last_month, ep.first_day)
            if start <= day < start + dt.timedelta(days=ep.days):
                value += ep.shift.get(measure, 0.0)
        return value

    def observation(
        self,
        obs_id: str,
        instant: dt.datetime,
        device_ref: str,
        code: Resource,
        value: Resource | None = None,
        interp: str | None = None,
        components: list[Resource] | None = None,
    ) -> Resource:
        obs: Resource = {
            "resourceType": "Observation",
            "id": obs_id,
            "meta": {"profile": observation_profiles(code)},
            "status": "final",
            "category": CATEGORY_VITAL_SIGNS,
            "code": code,
            "subject": ref("Patient", self.spec.id),
            "effectiveDateTime": iso(instant),
            # Home readings: the patient performed the measurement.
            "performer": [ref("Patient", self.spec.id)],
        }
        if value is not None:
            obs["valueQuantity"] = value
        if interp is not None:
            obs["interpretation"] = interpretation(interp)
        obs["device"] = {"reference": device_ref}
        if components is not None:
            obs["component"] = components
        self.readings.append(Reading(instant, obs, interp is not None))
        return obs

    def numeric(
        self,
        obs_id: str,
        instant: dt.datetime,
        device_ref: str,
        code: Resource,
        measure: str,
        raw: float,
        unit: Quantity,
        interp: str | None = None,
    ) -> None:
        q = quantity(raw, unit)
        interp = interp or interpret(measure, q["value"])
        self.observation(obs_id, instant, device_ref, code, q, interp)

    def blood_pressure(
        self, base_id: str, instant: dt.datetime, device_ref: str, evening: bool
    ) -> None:
        rng, day = self.rng, instant.date()
        drop = 4 if evening else 0  # evening readings after rest run a little lower
        systolic = self.level("systolic", day) - drop + rng.gauss(0, 8)
        # Diastolic moves with systolic, plus its own noise.
        diastolic = (
            self.level("diastolic", day)
            - drop / 2
            + 0.45 * (systolic - self.level("systolic", day))
            + rng.gauss(0, 4)
        )
        sys_q, dia_q = quantity(systolic, MMHG), quantity(diastolic, MMHG)
        components: list[Resource] = []
        flags: list[str] = []
        for code, q, measure in (
            (CODE_SYSTOLIC, sys_q, "systolic"),
            (CODE_DIASTOLIC, dia_q, "diastolic"),
        ):
            component: Resource = {"code": code, "valueQuantity": q}
            flag = interpret(measure, q["value"])
            if flag:
                component["interpretation"] = interpretation(flag)
                flags.append(flag)
            components.append(component)
        # The panel carries the most severe component flag, so "abnormal BP" is one lookup.
        worst = max(flags, key=lambda f: SEVERITY[f]) if flags else None
        self.observation(base_id, instant, device_ref, CODE_BP, interp=worst, components=components)
        pulse = self.level("pulse", day) + rng.gauss(0, 5)
        self.numeric(
            f"{base_id}-pulse", instant, device_ref, CODE_PULSE_BP, "pulse", pulse, PER_MIN
        )

    def oximetry(self, base_id: str, instant: dt.datetime, device_ref: str) -> None:
        rng, day = self.rng, instant.date()
        spo2 = min(100.0, self.level("spo2", day) + rng.gauss(0, 1.2))
        self.numeric(base_id, instant, device_ref, CODE_SPO2, "spo2", spo2, PERCENT)
        pulse = self.level("pulse", day) + rng.gauss(0, 5)
        self.numeric(
            f"{base_id}-pulse", instant, device_ref, CODE_PULSE_OXIMETER, "pulse", pulse, PER_MIN
        )

    def glucose(self, obs_id: str, instant: dt.datetime, device_ref: str, evening: bool) -> None:
        base = self.level("glucose", instant.date())
        spread = 0.16 * self.spec.baseline["glucose"]
        # Morning = fasting; evening = after dinner, higher and more variable.
        if evening:
            raw = base + 45 + self.rng.gauss(0, spread * 1.3)
        else:
            raw = base + self.rng.gauss(0, spread)
        self.numeric(obs_id, instant, device_ref, CODE_GLUCOSE, "glucose", max(raw, 40), MG_DL)

    def weight(self, obs_id: str, instant: dt.datetime, device_ref: str) -> None:
        day = instant.date()
        value = round(self.level("weight", day) + self.rng.gauss(0, 0.3), 1)
        # Heart-failure rule: a gain of 2 kg or more over the lowest weight of the previous week.
        week = [w for d, w in self.weights if day - dt.timedelta(days=7) <= d < day]
        flag = "U" if week and value - min(week) >= 2.0 else None
        self.weights.append((day, value))
        self.numeric(obs_id, instant, device_ref, CODE_WEIGHT, "weight", value, KG, flag)

    def temperature(self, obs_id: str, instant: dt.datetime, device_ref: str) -> None:
        raw = self.level("temperature", instant.date()) + self.rng.gauss(0, 0.2)
        self.numeric(obs_id, instant, device_ref, CODE_TEMPERATURE, "temperature", raw, CEL)


# How often a device that is in use is used on a reading day, and how often twice that day.
USE_PROBABILITY = {"bp": 0.9, "oximeter": 0.9, "glucose": 0.95, "scale": 0.85, "thermometer": 0.7}
EVENING_PROBABILITY = {
    "bp": 0.35,
    "oximeter": 0.25,
    "glucose": 0.5,
    "scale": 0.0,
    "thermometer": 0.2,
}
OBS_PREFIX = {
    "bp": "bp",
    "oximeter": "spo2",
    "glucose": "glucose",
    "scale": "weight",
    "thermometer": "temp",
}


def reading_days(spec: PatientSpec, cal: Calendar, rng: random.Random) -> list[dt.date]:
    """The days with at least one reading: exact counts in each 30-day half of the 60 days."""

    def in_use(day: dt.date) -> bool:
        return any(
            d.issued_on_day is None or day >= Calendar.day_of(cal.last_month, d.issued_on_day)
            for d in spec.devices
        )

    forced = {cal.anchor - dt.timedelta(days=n) for n in spec.forced_days_before_anchor}
    # The first reading starts the 30-day RPM device periods ($rpm-billing): with a reading on the
    # first of the 60 days, the periods are the two 30-day halves, and the "last 30 days" counted
    # in the README are exactly the billing period that ends with last month.
    if spec.prior_days > 0:
        forced.add(cal.first_reading_day)
    # Episode days always have readings, so the alerts that prompt visits exist.
    for ep in spec.episodes:
        start = Calendar.day_of(cal.last_month, ep.first_day)
        forced.update(start + dt.timedelta(days=i) for i in range(ep.days))
    chosen: list[dt.date] = []
    all_days = cal.reading_days()
    for half, target in (
        (all_days[:RECENT_DAYS], spec.prior_days),
        (all_days[RECENT_DAYS:], spec.recent_days),
    ):
        candidates = [d for d in half if in_use(d)]
        must = sorted(d for d in forced if d in candidates)
        rest = [d for d in candidates if d not in must]
        if not len(must) <= target <= len(candidates):
            # Only with anchors other than the default, where "last month" (device issue dates,
            # episodes) sits differently in the 60 days: keep going with the nearest possible count.
            print(f"note: {spec.id} gets fewer or more reading days than planned", file=sys.stderr)
        extra = max(0, min(target, len(candidates)) - len(must))
        chosen += must + rng.sample(rest, extra)
    return sorted(chosen)


def observations(spec: PatientSpec, cal: Calendar) -> list[Reading]:
    rng = rng_for("readings", spec.nn)
    ctx = ReadingContext(spec, cal, rng)
    for day in reading_days(spec, cal, rng):
        active = [
            d
            for d in spec.devices
            if d.issued_on_day is None or day >= Calendar.day_of(cal.last_month, d.issued_on_day)
        ]
        used = [d for d in active if rng.random() < USE_PROBABILITY[d.kind]]
        if not used:  # a reading day has at least one reading
            used = [rng.choice(active)]
        for d in used:
            dev_ref = f"Device/{device_id(d.kind, spec.nn)}"
            slots = ["am"] + (["pm"] if rng.random() < EVENING_PROBABILITY[d.kind] else [])
            for slot in slots:
                # Readings stay before 19:00 local time, so the calendar day is the same in UTC
                # (at most UTC-4/-5 here) and day counts do not depend on the zone used.
                if slot == "am":
                    instant = cal.at(day, rng.randint(6, 9), rng.randint(0, 59), rng.randint(0, 59))
                else:
                    instant = cal.at(
                        day, rng.randint(17, 18), rng.randint(0, 59), rng.randint(0, 59)
                    )
                obs_id = f"obs-{spec.nn:02d}-{OBS_PREFIX[d.kind]}-{day:%Y%m%d}-{slot}"
                evening = slot == "pm"
                if d.kind == "bp":
                    ctx.blood_pressure(obs_id, instant, dev_ref, evening)
                elif d.kind == "oximeter":
                    ctx.oximetry(obs_id, instant, dev_ref)
                elif d.kind == "glucose":
                    ctx.glucose(obs_id, instant, dev_ref, evening)
                elif d.kind == "scale":
                    ctx.weight(obs_id, instant, dev_ref)
                else:
                    ctx.temperature(obs_id, instant, dev_ref)
    return sorted(ctx.readings, key=lambda r: (r.instant, r.resource["id"]))


def virtual_visit_parts(spec: PatientSpec, visit: Visit, start: dt.datetime) -> Resource:
    """meta.profile and the modality / virtual service extensions of a virtual visit."""
    if visit.mode not in MODALITY:
        return {}
    ext: list[Resource] = [
        {
            "url": VIRTUAL_MODALITY,
            "valueCoding": coding(MODALITY_SYSTEM, *MODALITY[visit.mode]),
        }
    ]
    if visit.mode == "video":
        session = f"{spec.nn:02d}{start:%Y%m%d%H%M}"
        ext.append(
            {
                "url": VIRTUAL_SERVICE,
                "extension": [
                    {
                        "url": "channelType",
                        "valueCoding": coding(
                            "http://hl7.org/fhir/virtual-service-type",
                            "zoom",
                            "Zoom web conference",
                        ),
                    },
                    {"url": "address", "valueUrl": f"{PRACTICE_DOMAIN}/visit/{session}"},
                    {"url": "sessionKey", "valueString": session},
                ],
            }
        )
    elif visit.mode == "phone":
        phone = {"system": "phone", "value": PRACTICE_PHONE, "use": "work"}
        address = {"url": "address", "valueContactPoint": phone}
        ext.append({"url": VIRTUAL_SERVICE, "extension": [address]})
    return {"meta": {"profile": [VIRTUAL_VISIT]}, "extension": ext}


def encounter(
    spec: PatientSpec, visit: Visit, cal: Calendar, readings: Sequence[Reading], rng: random.Random
) -> Resource:
    if visit.when == "planned":
        day = cal.anchor + dt.timedelta(days=visit.day)
    else:
        month = cal.last_month if visit.when == "last" else cal.prior_month
        day = Calendar.day_of(month, visit.day)
    if visit.time:
        hour, minute = (int(x) for x in visit.time.split(":"))
    else:
        hour, minute = rng.randint(9, 15), rng.choice(range(0, 60, 5))
    start = cal.at(day, hour, minute)
    status = visit.status or ("planned" if visit.when == "planned" else "finished")
    virtual = visit.mode != "office"
    code, display, text = ENCOUNTER_TYPES[visit.mode]
    clinician = CLINICIAN_BY_KEY[visit.clinician]
    enc: Resource = {
        "resourceType": "Encounter",
        "id": f"enc-{spec.nn:02d}-{start:%Y%m%d-%H%M}",
        **virtual_visit_parts(spec, visit, start),
        "status": status,
        "class": ENCOUNTER_CLASSES["virtual" if virtual else "office"],
        "type": [concept(coding(SCT, code, display), text=text)],
        "subject": ref("Patient", spec.id),
        "participant": [
            {
                "type": [concept(coding(PARTICIPATION, "PPRF", "primary performer"))],
                "individual": {
                    **ref("Practitioner", f"practitioner-{clinician.key}"),
                    "display": clinician.display,
                },
            }
        ],
    }
    if status == "finished":
        end = start + dt.timedelta(minutes=visit.minutes)
        enc["period"] = {"start": iso(start), "end": iso(end)}
        enc["length"] = {"value": visit.minutes, "unit": "min", "system": UCUM, "code": "min"}
    else:  # planned or cancelled: only the booked start
        enc["period"] = {"start": iso(start)}
    enc["reasonCode"] = [{"text": visit.reason}]
    if visit.prompted:
        # The alert behind the visit: the latest abnormal reading of the week before it.
        week = [
            r for r in readings if r.abnormal and start - dt.timedelta(days=7) <= r.instant < start
        ]
        if week:
            enc["reasonReference"] = [{"reference": f"Observation/{week[-1].resource['id']}"}]
        else:  # possible with other anchors: the visit then just has its reasonCode
            print(f"note: no abnormal reading before {enc['id']}", file=sys.stderr)
    enc["serviceProvider"] = {**ref("Organization", ORG_ID), "display": PRACTICE_NAME}
    return enc


# --- Bundles -------------------------------------------------------------------------------------
def transaction(resources: Sequence[Resource]) -> Resource:
    entries = []
    seen: set[str] = set()
    for r in resources:
        url = f"{r['resourceType']}/{r['id']}"
        if url in seen:  # a clash would silently drop data on load
            raise ValueError(f"duplicate resource {url}")
        seen.add(url)
        entries.append({"resource": r, "request": {"method": "PUT", "url": url}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def enrollment_start(spec: PatientSpec, cal: Calendar) -> dt.date:
    issued = [d.issued_on_day for d in spec.devices if d.issued_on_day is not None]
    if len(issued) == len(spec.devices):
        return Calendar.day_of(cal.last_month, min(issued))
    return cal.first_reading_day - dt.timedelta(days=rng_for("enrolled", spec.nn).randint(10, 400))


def groups(cal: Calendar) -> list[Resource]:
    rpm = [p for p in PATIENTS if p.devices]

    def members(patients: Sequence[PatientSpec]) -> list[Resource]:
        return [
            {
                "entity": {**ref("Patient", p.id), "display": f"{p.given} {p.family}"},
                "period": {"start": enrollment_start(p, cal).isoformat()},
            }
            for p in patients
        ]

    chen = CLINICIAN_BY_KEY["chen"]
    panel = [p for p in rpm if p.clinician == chen.key]
    return [
        {
            "resourceType": "Group",
            "id": "group-rpm-patients",
            "active": True,
            "type": "person",
            "actual": True,
            "code": concept(text="Remote patient monitoring program"),
            "name": f"RPM patients {EN_DASH} {PRACTICE_NAME}",
            "quantity": len(rpm),
            "managingEntity": ref("Organization", ORG_ID),
            "member": members(rpm),
        },
        {
            "resourceType": "Group",
            "id": "group-panel-chen",
            "active": True,
            "type": "person",
            "actual": True,
            "code": concept(text="Clinician RPM panel"),
            "name": f"RPM panel {EN_DASH} {chen.display}",
            "quantity": len(panel),
            "managingEntity": ref("Practitioner", f"practitioner-{chen.key}"),
            "member": members(panel),
        },
    ]


SUBSCRIPTION_ENDPOINT = "https://ehr.riverbend-telehealth.example/fhir/rpm-notifications"
PAYLOAD_CONTENT = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)


def subscriptions() -> list[Resource]:
    """R4 rest-hook Subscriptions an EHR would register, switched off (the endpoint is fictional):
    set `status` to `requested` and point `channel.endpoint` at a real receiver to try them."""

    def subscription(sid: str, reason: str, criteria: str, content: str) -> Resource:
        # R4 has no id-only payload: the Subscriptions Backport IG's extension on channel.payload.
        channel: Resource = {"type": "rest-hook", "endpoint": SUBSCRIPTION_ENDPOINT}
        channel["payload"] = "application/fhir+json"
        if content != "full-resource":
            channel["_payload"] = {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]}
        channel["header"] = ["X-Practice: riverbend-telehealth"]
        return {
            "resourceType": "Subscription",
            "id": sid,
            "status": "off",
            "contact": [{"system": "phone", "value": PRACTICE_PHONE, "use": "work"}],
            "reason": reason,
            "criteria": criteria,
            "channel": channel,
        }

    return [
        subscription(
            "subscription-rpm-vitals",
            "Notify the EHR of new RPM vital-sign readings",
            "Observation?category=vital-signs",
            "full-resource",
        ),
        subscription(
            "subscription-virtual-visits",
            "Notify the EHR when a virtual visit is finished (id only: the EHR fetches it)",
            f"Encounter?class={ACT_CODE}|VR&status=finished",
            "id-only",
        ),
    ]


def build(cal: Calendar) -> dict[str, Resource]:
    """File name -> transaction Bundle. Sorted file names are the load order."""
    files: dict[str, Resource] = {}
    practice: list[Resource] = [organization()]
    practice += [practitioner(c, i) for i, c in enumerate(CLINICIANS)]
    practice += [practitioner_role(c) for c in CLINICIANS]
    files["00-practice.json"] = transaction(practice)
    for spec in PATIENTS:
        readings = observations(spec, cal)
        visit_rng = rng_for("visits", spec.nn)
        encounters = [encounter(spec, vis, cal, readings, visit_rng) for vis in spec.visits]
        encounters.sort(key=lambda e: e["period"]["start"])
        resources = [patient(spec, cal)]
        resources += [device(spec, d, cal) for d in spec.devices]
        resources += [r.resource for r in readings]
        resources += encounters
        # The "10-" prefix sorts the patients after 00-practice and before 90-groups (a bare
        # "patient-" sorts after "90-"): loading in name order never meets a dangling reference.
        files[f"10-{spec.id}.json"] = transaction(resources)
    files["90-groups.json"] = transaction([*groups(cal), *subscriptions()])
    return files


def dump(bundle: Resource) -> str:
    # Compact, key order as built, UTF-8 (the Group names have an en dash), one trailing newline.
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")) + "\n"


# --- README table --------------------------------------------------------------------------------
def days_band(days: int) -> str:
    if days == 0:
        return "none"
    if days == 1:
        return "single day"
    return "2-15" if days <= 15 else "16+"


def minutes_band(minutes: int) -> str:
    if minutes < 10:
        return "<10"
    if minutes < 20:
        return "10-19"
    return "20-39" if minutes < 40 else ">=40"


def band_table(files: Mapping[str, Resource], cal: Calendar) -> str:
    """The README's table, measured from the generated resources (the tests measure it again)."""
    recent = {cal.recent_start + dt.timedelta(days=i) for i in range(RECENT_DAYS)}
    month = (cal.last_month.year, cal.last_month.month)
    rows = [
        "| Patient | Name | Age | Program | Devices | Reading days, last 30 d | Days band "
        "| Virtual minutes, last month | Minutes band | Notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in PATIENTS:
        entries = [e["resource"] for e in files[f"10-{spec.id}.json"]["entry"]]
        days = {
            dt.datetime.fromisoformat(r["effectiveDateTime"]).astimezone(cal.tz).date()
            for r in entries
            if r["resourceType"] == "Observation"
        }
        minutes = 0
        for r in entries:
            if r["resourceType"] != "Encounter" or r["status"] != "finished":
                continue
            if r["class"]["code"] != "VR":
                continue
            start = dt.datetime.fromisoformat(r["period"]["start"]).astimezone(cal.tz)
            end = dt.datetime.fromisoformat(r["period"]["end"])
            if (start.year, start.month) == month:
                minutes += round((end - start).total_seconds() / 60)
        n_days = len(days & recent)
        devices = ", ".join(
            d.kind + (" (issued mid-period)" if d.issued_on_day else "") for d in spec.devices
        )
        rpm = bool(spec.devices)
        rows.append(
            f"| {spec.id} | {spec.given} {spec.family} | {spec.age} | {spec.program} "
            f"| {devices or 'none'} | {n_days} | {days_band(n_days) if rpm else 'n/a (not RPM)'} "
            f"| {minutes} | {minutes_band(minutes)} | {spec.note} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--anchor",
        type=dt.date.fromisoformat,
        default=DEFAULT_ANCHOR,
        help="readings end the day before this date (default %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="output folder"
    )
    parser.add_argument(
        "--tz", default=DEFAULT_TIME_ZONE, help="practice time zone (default %(default)s)"
    )
    parser.add_argument(
        "--table", action="store_true", help="also print the README's table of patients by band"
    )
    args = parser.parse_args(argv)
    cal = Calendar(args.anchor, ZoneInfo(args.tz))
    files = build(cal)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, bundle in files.items():
        data = dump(bundle).encode("utf-8")
        (args.out / name).write_bytes(data)
        total += len(data)
    resources = sum(len(b["entry"]) for b in files.values())
    print(f"wrote {len(files)} bundles, {resources} resources, {total:,} bytes to {args.out}")
    if args.table:
        print(band_table(files, cal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
