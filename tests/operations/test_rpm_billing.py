"""$rpm-billing over HTTP: Parameters and CSV answers, filters, time zones, errors, the demo data."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.operations.rpm_billing import DEFINITION
from tests.api.conftest import BASE, make_settings
from tests.operations.conftest import device, encounter, observation, patient, put

HR = [("http://loinc.org", "8867-4")]


def parts(node: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in node.get("part", node.get("parameter", [])) if p["name"] == name]


def value(node: dict[str, Any], name: str) -> Any:
    (found,) = parts(node, name)
    return next(v for k, v in found.items() if k.startswith("value"))


def codes(node: dict[str, Any]) -> list[str]:
    out = []
    for c in parts(node, "code"):
        code, units = value(c, "code")["code"], value(c, "units")
        out.append(code if units == 1 else f"{code}x{units}")
    return out


def patient_result(body: dict[str, Any], pid: str) -> dict[str, Any]:
    (found,) = [
        p for p in parts(body, "patient") if value(p, "patient")["reference"] == f"Patient/{pid}"
    ]
    return found


async def load_small_practice(client: httpx.AsyncClient) -> None:
    """p1: readings on 16 days of its second period; p2: on 15; p3: a device, no reading."""
    for pid in ("p1", "p2", "p3", "p4"):
        await put(client, patient(pid))
    for pid in ("p1", "p2", "p3"):
        await put(client, device(f"d-{pid}", pid))
    # First readings 2026-09-02 (period 1: 09-02..10-01; period 2: 10-02..10-31).
    for pid, n in (("p1", 16), ("p2", 15)):
        await put(
            client, observation(f"{pid}-first", pid, "2026-09-02T08:00:00-04:00", HR, f"d-{pid}")
        )
        for i in range(n):
            day = 2 + i
            when = f"2026-10-{day:02d}T08:00:00-04:00"
            await put(client, observation(f"{pid}-{day}", pid, when, HR, f"d-{pid}"))
    # Not a device reading (no device), and a withdrawn one: neither counts.
    await put(client, observation("p2-manual", "p2", "2026-10-20T08:00:00-04:00", HR))
    await put(
        client,
        observation(
            "p2-eie", "p2", "2026-10-21T08:00:00-04:00", HR, "d-p2", status="entered-in-error"
        ),
    )
    # p1: 20 virtual minutes; an in-person visit and an unfinished call that do not count.
    await put(
        client, encounter("e1", "p1", "2026-10-14T09:30:00-04:00", "2026-10-14T09:50:00-04:00")
    )
    await put(
        client,
        encounter("e2", "p1", "2026-10-15T09:30:00-04:00", "2026-10-15T10:30:00-04:00", "AMB"),
    )
    await put(
        client, encounter("e3", "p1", "2026-10-16T09:30:00-04:00", None, status="in-progress")
    )
    # p2: 19 minutes (9 + 10), from Encounter.length where present.
    await put(
        client, encounter("e4", "p2", "2026-10-03T09:00:00-04:00", "2026-10-03T09:09:00-04:00")
    )
    await put(
        client,
        encounter(
            "e5",
            "p2",
            "2026-10-04T09:00:00-04:00",
            "2026-10-04T09:30:00-04:00",
            length={
                "value": 10,
                "unit": "min",
                "system": "http://unitsofmeasure.org",
                "code": "min",
            },
        ),
    )


async def test_patient_level_parameters(client: httpx.AsyncClient) -> None:
    await load_small_practice(client)
    r = await client.get(
        "Patient/p1/$rpm-billing",
        params={"month": "2026-10", "asOf": "2026-11-01", "tz": "America/New_York"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters"
    assert value(body, "start") == "2026-10-01" and value(body, "end") == "2026-10-31"
    p1 = patient_result(body, "p1")
    assert value(p1, "firstReading") == "2026-09-02"
    assert value(p1, "timezone") == "America/New_York"
    first, second = parts(p1, "period")
    assert (value(first, "number"), value(first, "start"), value(first, "end")) == (
        1,
        "2026-09-02",
        "2026-10-01",
    )
    assert value(first, "readingDays") == 1 and codes(first) == []
    assert value(second, "readingDays") == 16 and codes(second) == ["99454"]
    assert value(second, "daysNeededFor16") == 0 and value(second, "complete") is True
    evidence = {e["valueReference"]["reference"] for e in parts(second, "evidence")}
    assert evidence == {f"Observation/p1-{d}" for d in range(2, 18)}
    (month,) = parts(p1, "month")
    assert value(month, "month") == "2026-10" and value(month, "minutes") == 20
    assert value(month, "interactiveCommunications") == 1 and codes(month) == ["99457"]
    (ev,) = parts(month, "evidence")
    assert value(ev, "encounter") == {"reference": "Encounter/e1"} and value(ev, "minutes") == 20


async def test_system_level_and_the_16_day_line(client: httpx.AsyncClient) -> None:
    await load_small_practice(client)
    q = {"month": "2026-10", "asOf": "2026-11-01", "tz": "America/New_York"}
    body = (await client.get("$rpm-billing", params=q)).json()
    # p4 has neither a device nor readings: not an RPM patient.
    listed = [value(p, "patient")["reference"] for p in parts(body, "patient")]
    assert listed == ["Patient/p1", "Patient/p2", "Patient/p3"]
    p2 = patient_result(body, "p2")
    period2 = parts(p2, "period")[1]
    assert value(period2, "readingDays") == 15 and codes(period2) == ["99445"]
    assert value(period2, "daysNeededFor16") == 1
    (month,) = parts(p2, "month")
    assert value(month, "minutes") == 19 and codes(month) == ["99470"]
    p3 = patient_result(body, "p3")
    assert parts(p3, "firstReading") == [] and parts(p3, "period") == []

    # "Which of my RPM patients are under 16 days this period, and how many days are left?"
    q = {"below16": "true", "asOf": "2026-10-20", "tz": "America/New_York"}
    body = (await client.get("$rpm-billing", params=q)).json()
    under = {value(p, "patient")["reference"]: p for p in parts(body, "patient")}
    assert set(under) == {"Patient/p2", "Patient/p3"}  # p1 has 16 days by 10-20 already
    (current,) = parts(under["Patient/p2"], "period")
    assert value(current, "start") == "2026-10-02" and value(current, "readingDays") == 15
    assert value(current, "daysLeft") == 12 and value(current, "daysLeftWithoutReading") == 12
    assert value(current, "canReach16") is True


async def test_days_are_counted_in_the_patients_zone(client: httpx.AsyncClient) -> None:
    await put(
        client,
        patient(
            "tzp",
            extension=[
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/tz-code",
                    "valueCode": "America/New_York",
                }
            ],
        ),
    )
    await put(client, device("d-tz", "tzp"))
    # 23:30 on Oct 31 in New York is Nov 1 in UTC.
    await put(client, observation("late", "tzp", "2026-10-31T23:30:00-04:00", HR, "d-tz"))
    await put(client, observation("next", "tzp", "2026-11-01T12:00:00-05:00", HR, "d-tz"))
    r = await client.get(
        "Patient/tzp/$rpm-billing", params={"start": "2026-10-31", "end": "2026-11-01"}
    )
    (period,) = parts(patient_result(r.json(), "tzp"), "period")  # zone from the Patient
    assert [d["valueDate"] for d in parts(period, "readingDay")] == ["2026-10-31", "2026-11-01"]
    r = await client.get(
        "Patient/tzp/$rpm-billing", params={"start": "2026-10-31", "end": "2026-11-01", "tz": "UTC"}
    )
    (period,) = parts(patient_result(r.json(), "tzp"), "period")  # the parameter wins
    assert value(period, "start") == "2026-11-01"
    assert [d["valueDate"] for d in parts(period, "readingDay")] == ["2026-11-01"]


async def test_csv_for_spreadsheets(client: httpx.AsyncClient) -> None:
    await load_small_practice(client)
    q = {"month": "2026-10", "asOf": "2026-11-01", "tz": "America/New_York", "_format": "csv"}
    r = await client.get("$rpm-billing", params=q)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    p2 = [row for row in rows if row["patient"] == "Patient/p2"]
    period = next(row for row in p2 if row["row"] == "period" and row["number"] == "2")
    assert (period["reading_days"], period["cpt_codes"]) == ("15", "99445")
    month = next(row for row in p2 if row["row"] == "month")
    assert (month["minutes"], month["cpt_codes"], month["evidence"]) == (
        "19",
        "99470",
        "Encounter/e4 Encounter/e5",
    )
    accept = await client.get(
        "$rpm-billing", params={"month": "2026-10"}, headers={"Accept": "text/csv"}
    )
    assert accept.status_code == 200 and accept.text.startswith("patient,timezone,")
    # CSV is for the system-level summary; elsewhere it is refused, as an OperationOutcome.
    for url in ("Patient/p1/$rpm-billing", "Patient/p1", "Patient"):
        r = await client.get(url, headers={"Accept": "text/csv"})
        assert r.status_code == 406, url
        assert r.headers["content-type"].startswith("application/fhir+json")
        assert r.json()["resourceType"] == "OperationOutcome"
    # text/csv preferred but JSON accepted too: JSON where there is no CSV.
    for url in ("Patient/p1/$rpm-billing", "Patient/p1"):
        r = await client.get(url, headers={"Accept": "text/csv, application/fhir+json;q=0.5"})
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "application/fhir+json"
        )
    r = await client.get("Patient/p1/$rpm-billing", params={"_format": "csv"})
    assert r.status_code == 406
    r = await client.get("$rpm-billing", params={"month": "2026-99", "_format": "csv"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


async def test_post_with_parameters_and_group_filter(client: httpx.AsyncClient) -> None:
    await load_small_practice(client)
    await put(
        client,
        {
            "resourceType": "Group",
            "id": "g",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/p2"}}],
        },
    )
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "month", "valueString": "2026-10"},
            {"name": "group", "valueString": "Group/g"},
            {"name": "below16", "valueBoolean": True},
        ],
    }
    r = await client.post("$rpm-billing", json=body)
    assert r.status_code == 200, r.text
    assert [value(p, "patient")["reference"] for p in parts(r.json(), "patient")] == ["Patient/p2"]


async def test_bad_input_is_a_4xx(client: httpx.AsyncClient) -> None:
    await load_small_practice(client)
    for q in (
        {"month": "2026-13"},
        {"month": "Oct"},
        {"tz": "Mars/Olympus"},
        {"start": "2026-10-10", "end": "2026-10-01"},
        {"start": "2026-10-01", "month": "2026-10"},
        {"below16": "yes"},
        {"asOf": "tomorrow"},
        {"start": "2020-01-01", "end": "2026-01-01"},
    ):
        r = await client.get("$rpm-billing", params=q)
        assert r.status_code == 400, q
        assert r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient/nobody/$rpm-billing")).status_code == 404
    assert (await client.get("Patient/p1/$rpm-billing", params={"group": "g"})).status_code == 400
    assert (await client.get("Observation/$rpm-billing")).status_code == 404
    assert (await client.post("$rpm-billing", json={"resourceType": "Patient"})).status_code == 400


@pytest.mark.slow  # loads the whole demo practice (about 1,700 resources)
async def test_demo_practice_last_month(tmp_path: Path) -> None:
    """The seed data (seed_data/README.md) on both sides of each billing line, October 2026."""
    app = create_app(make_settings(tmp_path, seed=True))  # server zone UTC: the Patients say NY
    async with LifespanManager(app, startup_timeout=120) as manager:  # loads 1,700 resources
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            q = {"month": "2026-10", "asOf": "2026-11-01"}
            body = (await client.get("$rpm-billing", params=q)).json()
            listed = {value(p, "patient")["reference"] for p in parts(body, "patient")}
            assert len(listed) == 19 and "Patient/patient-20" not in listed

            def last_period(pid: str) -> dict[str, Any]:
                return parts(patient_result(body, pid), "period")[-1]

            def month(pid: str) -> dict[str, Any]:
                return parts(patient_result(body, pid), "month")[0]

            assert value(last_period("patient-04"), "readingDays") == 16
            assert codes(last_period("patient-04")) == ["99454"]
            assert value(last_period("patient-05"), "readingDays") == 15
            assert codes(last_period("patient-05")) == ["99445"]
            assert codes(last_period("patient-07")) == [] and codes(last_period("patient-08")) == []
            assert value(last_period("patient-12"), "start") == "2026-10-12"
            assert "99453" in codes(last_period("patient-12"))
            expected = {
                "patient-04": ["99457"],
                "patient-05": ["99470"],
                "patient-06": [],
                "patient-10": ["99470"],
                "patient-15": ["99470"],
                "patient-16": ["99457", "99458"],
                "patient-19": ["99457"],
                "patient-11": ["99457", "99458"],
            }
            for pid, want in expected.items():
                assert codes(month(pid)) == want, pid
            assert value(month("patient-11"), "minutes") == 55  # the 20:30 call on Oct 31

            q = {"month": "2026-10", "asOf": "2026-11-01", "below16": "true", "_format": "csv"}
            rows = list(
                csv.DictReader(io.StringIO((await client.get("$rpm-billing", params=q)).text))
            )
            under = {
                row["patient"]
                for row in rows
                if row["row"] == "period" and row["end"] == "2026-10-31"
            }
            assert {"Patient/patient-05", "Patient/patient-07", "Patient/patient-08"} <= under
            assert "Patient/patient-04" not in under


def test_operation_definition_is_valid_r4() -> None:
    from fhir.resources.R4B.operationdefinition import OperationDefinition

    path = Path(__file__).resolve().parents[2] / "profiles" / "OperationDefinition-rpm-billing.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    OperationDefinition.model_validate(doc)
    assert doc["url"] == "https://fhir-server.dev/fhir/OperationDefinition/rpm-billing"
    assert doc["code"] == "rpm-billing" and doc["system"] and doc["instance"]
    ins = {p["name"] for p in doc["parameter"] if p["use"] == "in"}
    assert ins == {"month", "start", "end", "asOf", "tz", "below16", "group"}


async def test_served_and_advertised(client: httpx.AsyncClient) -> None:
    r = await client.get("OperationDefinition/rpm-billing")
    assert r.status_code == 200 and r.json()["code"] == "rpm-billing"
    rest = (await client.get("metadata")).json()["rest"][0]
    assert {"name": "rpm-billing", "definition": DEFINITION} in rest["operation"]
    patient_ops = next(r["operation"] for r in rest["resource"] if r["type"] == "Patient")
    assert {"name": "rpm-billing", "definition": DEFINITION} in patient_ops


async def test_far_dates_and_long_ranges_are_a_400(client: httpx.AsyncClient) -> None:
    """Dates at the edge of the calendar (years 1 and 9999) are refused, never a 500."""
    await load_small_practice(client)
    for q in (
        {"month": "9999-12"},
        {"month": "0001-01"},
        {"start": "9999-12-31"},
        {"end": "9999-12-31"},
        {"start": "0001-01-01", "end": "0001-01-31"},
        {"asOf": "9999-12-31"},
        {"asOf": "0001-01-01"},
        {"start": "2026-10-01", "end": "9999-12-31"},
        {"start": "2026-10-01", "end": "2027-10-02"},  # 367 days
        {"end": "2026-10-01", "asOf": "2026-10-05", "start": "2026-10-02"},  # inverted
    ):
        for path in ("$rpm-billing", "Patient/p1/$rpm-billing"):
            r = await client.get(path, params=q)
            assert r.status_code == 400, (path, q, r.text)
            outcome = r.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["expression"], q
    r = await client.get("$rpm-billing", params={"month": "9999-12"})
    assert "between 1900-01 and 2999-12, not 9999-12" in r.json()["issue"][0]["diagnostics"]
    r = await client.get("$rpm-billing", params={"asOf": "9999-12-31"})
    assert "between 1900-01-01 and 2999-12-31" in r.json()["issue"][0]["diagnostics"]
    r = await client.get("$rpm-billing", params={"start": "2026-01-01", "end": "2026-12-31"})
    assert r.status_code == 200, r.text


async def test_readings_at_the_edge_of_the_calendar_do_not_break_billing(
    client: httpx.AsyncClient,
) -> None:
    await put(client, patient("edge"))
    await put(client, device("edge-cuff", "edge"))
    for oid, when in (("e1", "0001-01-01T00:30:00+05:00"), ("e2", "9999-12-31T23:30:00-05:00"),
                      ("e3", "2026-10-02T08:00:00Z")):  # fmt: skip
        await put(client, observation(oid, "edge", when, HR, device_id="edge-cuff"))
    r = await client.get("Patient/edge/$rpm-billing", params={"month": "2026-10",
                                                              "asOf": "2026-10-31"})  # fmt: skip
    assert r.status_code == 200, r.text


async def test_unknown_parameters_are_refused(client: httpx.AsyncClient) -> None:
    await load_small_practice(client)
    for path in ("$rpm-billing", "Patient/p1/$rpm-billing"):
        r = await client.get(path, params={"month": "2026-10", "bogus": "1"})
        assert r.status_code == 400, r.text
        issue = r.json()["issue"][0]
        assert "'bogus'" in issue["diagnostics"] and issue["expression"] == ["bogus"]
        lenient = {"Prefer": "handling=lenient"}
        r = await client.get(path, params={"month": "2026-10", "bogus": "1"}, headers=lenient)
        assert r.status_code == 200, r.text
    body = {"resourceType": "Parameters", "parameter": [{"name": "bogus", "valueString": "1"}]}
    assert (await client.post("$rpm-billing", json=body)).status_code == 400
    r = await client.get("$rpm-billing", params={"month": "2026-10", "_format": "csv"})
    assert r.status_code == 200
