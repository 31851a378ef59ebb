"""The RPM billing rules (fhir_server/rpm/billing.py) on their own: periods, codes, days, zones."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from fhir_server.rpm import billing
from fhir_server.rpm.billing import Contact, CptLine, Reading

NY = ZoneInfo("America/New_York")
D = dt.date


def days_from(first: dt.date, n: int, step: int = 1) -> list[Reading]:
    return [Reading(f"Observation/o{i}", first + dt.timedelta(days=i * step)) for i in range(n)]


def codes(lines: tuple[CptLine, ...]) -> list[str]:
    return [line.text() for line in lines]


# --- Device periods ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("days", "first_period", "expected"),
    [
        (0, True, []),
        (1, True, []),
        (2, True, ["99453", "99445"]),
        (15, True, ["99453", "99445"]),
        (16, True, ["99453", "99454"]),
        (30, True, ["99453", "99454"]),
        (1, False, []),
        (2, False, ["99445"]),
        (15, False, ["99445"]),
        (16, False, ["99454"]),
    ],
)
def test_period_codes(days: int, first_period: bool, expected: list[str]) -> None:
    assert codes(billing.period_codes(days, first_period)) == expected


def test_15_and_16_days_in_a_period() -> None:
    first = D(2026, 10, 2)
    fifteen = billing.device_period(1, first, days_from(first, 15, 2), D(2026, 11, 5))
    assert fifteen.reading_days == 15 and fifteen.days_needed == 1
    assert codes(fifteen.codes) == ["99453", "99445"]
    sixteen = billing.device_period(1, first, days_from(first, 16), D(2026, 11, 5))
    assert sixteen.reading_days == 16 and sixteen.days_needed == 0
    assert codes(sixteen.codes) == ["99453", "99454"]


def test_period_boundaries() -> None:
    first = D(2026, 9, 2)
    assert billing.period_bounds(first, 1) == (D(2026, 9, 2), D(2026, 10, 1))
    assert billing.period_bounds(first, 2) == (D(2026, 10, 2), D(2026, 10, 31))
    # A reading on the last day of period 1 and one on the first day of period 2.
    readings = [Reading("Observation/a", D(2026, 10, 1)), Reading("Observation/b", D(2026, 10, 2))]
    p1 = billing.device_period(1, first, readings, D(2026, 12, 1))
    p2 = billing.device_period(2, first, readings, D(2026, 12, 1))
    assert p1.days == (D(2026, 10, 1),) and p1.evidence == ("Observation/a",)
    assert p2.days == (D(2026, 10, 2),) and p2.evidence == ("Observation/b",)
    assert billing.overlapping_periods(first, D(2026, 10, 1), D(2026, 10, 31)) == [1, 2]
    assert billing.overlapping_periods(first, D(2026, 10, 2), D(2026, 10, 31)) == [2]
    assert billing.overlapping_periods(first, D(2026, 8, 1), D(2026, 8, 31)) == []
    assert billing.overlapping_periods(first, D(2026, 8, 1), D(2026, 9, 2)) == [1]


def test_several_readings_on_one_day_count_once_but_all_are_evidence() -> None:
    day = D(2026, 10, 5)
    readings = [Reading("Observation/am", day), Reading("Observation/pm", day)]
    p = billing.device_period(1, day, readings, day)
    assert p.reading_days == 1 and set(p.evidence) == {"Observation/am", "Observation/pm"}
    assert p.codes == ()


def test_days_left_and_can_reach_16() -> None:
    first = D(2026, 10, 2)  # period 1: 2026-10-02 .. 2026-10-31
    readings = days_from(first, 10)  # 10-02 .. 10-11
    mid = billing.device_period(1, first, readings, D(2026, 10, 20))
    assert (mid.days_left, mid.days_open, mid.days_needed) == (12, 12, 6)
    assert mid.can_reach_16 and not mid.complete
    late = billing.device_period(1, first, readings, D(2026, 10, 27))
    assert (late.days_left, late.days_open) == (5, 5) and not late.can_reach_16
    # A reading on the as-of day itself is already counted: that day is not open any more.
    today = billing.device_period(
        1, first, [*readings, Reading("Observation/t", D(2026, 10, 27))], D(2026, 10, 27)
    )
    assert (today.days_left, today.days_open, today.reading_days) == (5, 4, 11)
    done = billing.device_period(1, first, readings, D(2026, 11, 1))
    assert done.complete and done.days_left == 0 and done.days_open == 0
    before = billing.device_period(1, first, readings, D(2026, 9, 1))
    assert before.days_left == 30 and before.reading_days == 0


def test_readings_after_as_of_are_not_counted_yet() -> None:
    first = D(2026, 10, 2)
    readings = days_from(first, 30)  # every day of the period
    on_10th = billing.device_period(1, first, readings, D(2026, 10, 10))
    assert on_10th.reading_days == 9 and on_10th.evidence[-1] == "Observation/o8"
    assert (on_10th.days_left, on_10th.days_open) == (22, 21)
    contacts = [
        Contact("Encounter/a", D(2026, 10, 3), 600),
        Contact("Encounter/b", D(2026, 10, 20), 600),
    ]
    m = billing.month_summary(D(2026, 10, 1), D(2026, 10, 31), contacts, D(2026, 10, 10))
    assert m.minutes == 10 and [c.ref for c in m.contacts] == ["Encounter/a"]


# --- Months --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, []),
        (9, []),
        (10, ["99470"]),
        (19, ["99470"]),
        (20, ["99457"]),
        (39, ["99457"]),
        (40, ["99457", "99458"]),
        (59, ["99457", "99458"]),
        (60, ["99457", "99458x2"]),
        (85, ["99457", "99458x3"]),
    ],
)
def test_month_codes(minutes: int, expected: list[str]) -> None:
    assert codes(billing.month_codes(minutes, interactive=1)) == expected


def test_no_management_code_without_an_interactive_communication() -> None:
    assert billing.month_codes(45, interactive=0) == ()


def test_minutes_are_summed_in_seconds_and_rounded_down_once() -> None:
    oct1, oct31 = D(2026, 10, 1), D(2026, 10, 31)
    almost = [
        Contact("Encounter/a", D(2026, 10, 3), 9 * 60 + 59.5),
        Contact("Encounter/b", D(2026, 10, 9), 10 * 60),
    ]
    m = billing.month_summary(oct1, oct31, almost)
    assert m.minutes == 19 and codes(m.codes) == ["99470"]
    halves = [
        Contact("Encounter/a", D(2026, 10, 3), 630),
        Contact("Encounter/b", D(2026, 10, 9), 570),
    ]
    m = billing.month_summary(oct1, oct31, halves)
    assert m.minutes == 20 and codes(m.codes) == ["99457"] and m.interactive == 2
    outside = [Contact("Encounter/c", D(2026, 11, 1), 3600)]
    assert billing.month_summary(oct1, oct31, outside).minutes == 0


def test_months_overlapping() -> None:
    assert billing.months_overlapping(D(2026, 10, 20), D(2026, 12, 2)) == [
        (D(2026, 10, 1), D(2026, 10, 31)),
        (D(2026, 11, 1), D(2026, 11, 30)),
        (D(2026, 12, 1), D(2026, 12, 31)),
    ]
    assert billing.months_overlapping(D(2028, 2, 10), D(2028, 2, 10)) == [
        (D(2028, 2, 1), D(2028, 2, 29))
    ]


# --- FHIR values ---------------------------------------------------------------------------------
def test_local_day_around_midnight() -> None:
    # 23:30 in New York on Oct 31 is Nov 1 in UTC: the patient's day is Oct 31.
    assert billing.local_day("2026-11-01T03:30:00Z", NY) == D(2026, 10, 31)
    assert billing.local_day("2026-10-31T23:30:00-04:00", NY) == D(2026, 10, 31)
    assert billing.local_day("2026-10-31T23:30:00-04:00", ZoneInfo("UTC")) == D(2026, 11, 1)
    # After the switch to standard time (2026-11-01), midnight is 05:00 UTC.
    assert billing.local_day("2026-11-02T04:59:59Z", NY) == D(2026, 11, 1)
    assert billing.local_day("2026-11-02T05:00:00Z", NY) == D(2026, 11, 2)
    assert billing.local_day("2026-10-05", NY) == D(2026, 10, 5)
    assert billing.local_day("2026-10-05T08:00:00", NY) == D(2026, 10, 5)  # no zone: as written
    assert billing.local_day("2026-10", NY) is None
    assert billing.local_day("garbage-value", NY) is None
    assert billing.local_day(None, NY) is None


def test_encounter_seconds() -> None:
    period = {"start": "2026-10-14T09:30:00-04:00", "end": "2026-10-14T09:49:30-04:00"}
    assert billing.encounter_seconds({"period": period}) == 19.5 * 60
    # Encounter.length wins over the period.
    assert (
        billing.encounter_seconds({"period": period, "length": {"value": 25, "code": "min"}})
        == 1500
    )
    assert billing.encounter_seconds({"length": {"value": 0.5, "unit": "h"}}) == 1800
    assert billing.encounter_seconds({"period": {"start": "2026-10-14T09:30:00Z"}}) is None
    reversed_period = {"start": "2026-10-14T10:00:00Z", "end": "2026-10-14T09:00:00Z"}
    assert billing.encounter_seconds({"period": reversed_period}) is None


def test_which_encounters_and_observations_count() -> None:
    vr = {"status": "finished", "class": {"code": "VR"}}
    assert billing.is_interactive_contact(vr)
    assert not billing.is_interactive_contact({**vr, "status": "in-progress"})
    assert not billing.is_interactive_contact({"status": "finished", "class": {"code": "AMB"}})
    obs = {"status": "final", "device": {"reference": "Device/d"}}
    assert billing.is_device_reading(obs)
    assert not billing.is_device_reading({**obs, "status": "entered-in-error"})
    assert not billing.is_device_reading({"status": "final"})
    assert (
        billing.observation_effective({"effectivePeriod": {"start": "2026-10-01"}}) == "2026-10-01"
    )


# --- A patient -----------------------------------------------------------------------------------
def test_bill_patient_and_below_16() -> None:
    first = D(2026, 9, 2)
    readings = days_from(first, 20) + days_from(D(2026, 10, 2), 15, 2)
    contacts = [Contact("Encounter/v", D(2026, 10, 14), 20 * 60)]
    result = billing.bill_patient(
        "Patient/p",
        "America/New_York",
        first,
        readings,
        contacts,
        D(2026, 10, 1),
        D(2026, 10, 31),
        D(2026, 11, 1),
    )
    assert [p.number for p in result.periods] == [1, 2]
    assert [p.reading_days for p in result.periods] == [20, 15]
    assert codes(result.periods[0].codes) == ["99453", "99454"]
    assert codes(result.periods[1].codes) == ["99445"]
    assert [m.month for m in result.months] == ["2026-10"]
    assert codes(result.months[0].codes) == ["99457"]
    under = billing.below_16(result)
    assert under is not None and [p.number for p in under.periods] == [2]
    all_good = billing.bill_patient(
        "Patient/q",
        "UTC",
        first,
        days_from(first, 60),
        [],
        D(2026, 10, 1),
        D(2026, 10, 31),
        D(2026, 11, 1),
    )
    assert billing.below_16(all_good) is None
    never = billing.bill_patient(
        "Patient/r", "UTC", None, [], [], D(2026, 10, 1), D(2026, 10, 31), D(2026, 11, 1)
    )
    assert never.periods == () and billing.below_16(never) is not None
    assert billing.fetch_window(first, D(2026, 10, 1), D(2026, 10, 31)) == (first, D(2026, 10, 31))
