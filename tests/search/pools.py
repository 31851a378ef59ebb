"""Small pools of values shared by the generated and the fixed search tests.

Values are chosen so that queries hit and boundaries meet: the same code in several systems and
without one, dates of every precision in zones that move the UTC day or year, quantities on the
implicit-precision edges of the search values, names with accents and case variants.
"""

from __future__ import annotations

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
LOCAL = "urn:oid:2.16.840.1.113883.19.5"
OBSCAT = "http://terminology.hl7.org/CodeSystem/observation-category"
UCUM = "http://unitsofmeasure.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
MRN = "http://hospital.example.org/mrn"
SSN = "http://hl7.org/fhir/sid/us-ssn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

# (system, code, display): the same code in several systems and without one.
CODINGS = [
    (LOINC, "8867-4", "Heart rate"),
    (LOINC, "29463-7", "Body weight"),
    (LOINC, "85354-9", "Blood pressure panel"),
    (SCT, "271649006", "Systolic blood pressure"),
    (LOCAL, "8867-4", "Pulse (local)"),
    (None, "8867-4", "héart rate, no system"),
    (None, "x1", None),
]
CC_TEXTS = [None, None, "Héart Rate", "BLOOD pressure", "Pulse"]
CATEGORIES = [
    (OBSCAT, "vital-signs", "Vital Signs"),
    (OBSCAT, "laboratory", "Laboratory"),
    (None, "vital-signs", None),
    (LOCAL, "survey", "Survey"),
]
TEXT_QUERIES = [
    "free",
    "heart",
    "HEART",
    "héart",
    "hèart r",
    "blood p",
    "body",
    "pulse",
    "rate",
    "vital",
]
OBS_STATUS = ["final", "amended", "preliminary", "cancelled"]
ENC_STATUS = ["planned", "in-progress", "finished", "cancelled"]
CLASSES = [
    (ACT, "AMB", "ambulatory"),
    (ACT, "EMER", "emergency"),
    (ACT, "VR", "virtual"),
    (None, "AMB", None),
    (LOCAL, "VR", "Video visit"),
]
# Stored dateTimes: every precision, zones that move the UTC day (and year), fractions.
DATETIMES = [
    "2024",
    "2024-03",
    "2024-03-01",
    "2024-02-29",
    "2024-03-01T10:00:00Z",
    "2024-03-01T23:30:00-05:00",  # 2024-03-02T04:30Z
    "2024-03-02T00:30:00+02:00",  # 2024-03-01T22:30Z
    "2024-03-31T23:59:59Z",
    "2024-04-01T00:00:00.500Z",
    "2023-12-31T23:00:00-02:00",  # 2024-01-01T01:00Z
    "2024-03-15T12:00:00+14:00",
]
# Search values: the stored ones (equal bounds are where prefixes differ) and a few more.
SEARCH_DATES = [
    *DATETIMES,
    "2023",
    "2024-04",
    "2024-03-02",
    "2024-01-01",
    "2024-03-01T22:30:00Z",
    "2024-03-01T12:00:00+02:00",
    "2024-03-01T10:00:00",  # no zone: the server's zone (UTC in these tests)
    "2024-04-01T00:00:00.5Z",  # a fraction: [.5 s, .6 s)
]
BIRTHDATES = ["1980", "1980-05", "1980-05-17", "1980-12-31", "1990-01-01", "2000-02-29"]
SEARCH_BIRTHDATES = [*BIRTHDATES, "1981", "2000", "1980-12", "1980-05-17T10:00:00Z"]
# Prefixes for dates and quantities, no prefix (eq) twice as likely; `ap` is left to servers.
PREFIX_CHOICES = ["", "", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
# Stored quantities cluster at the implicit-precision boundaries of the search values.
AMOUNTS = [69.5, 69.95, 70, 70.04, 70.05, 70.5, 71, 99.5, 100, 100.5, 120]
SEARCH_AMOUNTS = ["70", "70.0", "70.5", "69.5", "100", "100.0", "99", "70.05", "71", "100.5"]
UNITS = [
    (UCUM, "/min", "beats/minute"),
    (UCUM, "kg", "kg"),
    (UCUM, "mm[Hg]", "mmHg"),
    (None, None, "kg"),
    (None, None, None),
]
UNIT_QUERIES = ["", "", f"|{UCUM}|kg", "||kg", "||mmHg", "||/min", f"|{UCUM}|mm[Hg]"]
PATIENT_REFS = ["Patient/p1", "Patient/p2", "Patient/p3"]
SUBJECT_REFS = [*PATIENT_REFS, "Group/g1", "Group/p2"]  # Group/p2 shares an id with Patient/p2
REF_QUERIES = ["p1", "p2", "g1", "Patient/p1", "Patient/p2", "Group/p2", "Group/g1", "p9"]
FAMILIES = ["Müller", "Muller", "MÜLLER", "Smith", "Smythe", "Ångström", "de la Cruz"]
GIVENS = ["Zoë", "Zoe", "ZOE", "José", "Jo", "Ann", "Anna-Lena"]
NAME_QUERIES = [
    "mu",
    "MÜ",
    "müller",
    "Müller",
    "Muller",
    "sm",
    "smy",
    "ang",
    "Ång",
    "zo",
    "zoë",
    "Zoë",
    "jo",
    "josé",
    "ann",
    "anna-",
    "dr",
    "de la",
    "cruz",
    "ll",
    "e",
    "renee",
    "o'b",
    "jr",
]
IDENTIFIERS = [
    (MRN, "12345", "MR"),
    (SSN, "12345", None),
    (None, "12345", None),
    (MRN, "777", "MR"),
    (LOCAL, "ABC", "PI"),
]
GENDERS = ["male", "female", "other", "unknown"]
