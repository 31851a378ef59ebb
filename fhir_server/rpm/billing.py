"""RPM billing periods (2026 CPT): what the stored readings and contacts support. Pure, no I/O.

Per patient:

- **30-day device periods**, counted from the local date of the patient's first device reading
  (period 1 is that day and the 29 after it, period 2 the next 30 days, ...). A period supports
  99445 with readings on 2-15 of its days or 99454 with 16-30 (never both); 99453 (set-up) is
  supported once per episode, by period 1 when it has at least 2 reading days.
- **Calendar months** of treatment management: the minutes of interactive communication (finished
  contacts whose start falls in the month) support 99470 for 10-19 minutes, or 99457 for the first
  20 minutes plus one 99458 for each further full 20 minutes (never 99470 with 99457).

Everything is computed as of a day (`as_of`, normally today): readings and contacts dated later
are left out, so a past `as_of` shows what was known then. Days and months are the patient's local
calendar (a zone), so a reading at 23:30 in New York counts
for that day, not for the next day in UTC. Minutes are summed in seconds and rounded down once, so
19 min 59 s never reaches a 20-minute code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CPT = "http://www.ama-assn.org/go/cpt"
PERIOD_DAYS = 30
DAYS_FOR_99454 = 16
DAYS_FOR_99445 = 2
CPT_DISPLAY = {
    "99453": "RPM set-up and patient education on use of equipment",
    "99445": "RPM device supply with daily recordings, 2-15 days in 30 days",
    "99454": "RPM device supply with daily recordings, 16-30 days in 30 days",
    "99470": "RPM treatment management, first 10 minutes in a calendar month",
    "99457": "RPM treatment management, first 20 minutes in a calendar month",
    "99458": "RPM treatment management, each additional 20 minutes",
}
# v3-ActCode classes of in-person encounters: billed as visits of their own, not as RPM time.
IN_PERSON_CLASSES = frozenset(
    {"AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS"}
)
_DURATION_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Reading:
    """A device reading: an Observation reference and the patient-local day it was taken."""

    ref: str
    day: dt.date


@dataclass(frozen=True, slots=True)
class Contact:
    """A finished interactive communication (an Encounter) and its length."""

    ref: str
    day: dt.date  # local day of its start
    seconds: float


@dataclass(frozen=True, slots=True)
class CptLine:
    code: str
    units: int = 1

    @property
    def display(self) -> str:
        return CPT_DISPLAY[self.code]

    def text(self) -> str:
        return self.code if self.units == 1 else f"{self.code}x{self.units}"


@dataclass(frozen=True, slots=True)
class DevicePeriod:
    number: int  # 1 for the period that starts with the first reading
    start: dt.date
    end: dt.date  # inclusive: start + 29 days
    days: tuple[dt.date, ...]  # distinct local days with at least one reading
    evidence: tuple[str, ...]  # the Observations counted
    codes: tuple[CptLine, ...]
    days_needed: int  # reading days still missing to reach 16 (0 once reached)
    days_left: int  # days of the period from `as_of` to its end, inclusive
    days_open: int  # of those, days without a reading yet
    complete: bool  # the period ended before `as_of`

    @property
    def reading_days(self) -> int:
        return len(self.days)

    @property
    def can_reach_16(self) -> bool:
        return self.reading_days + self.days_open >= DAYS_FOR_99454


@dataclass(frozen=True, slots=True)
class MonthSummary:
    month: str  # YYYY-MM
    start: dt.date
    end: dt.date  # last day of the month
    minutes: int
    contacts: tuple[Contact, ...]
    codes: tuple[CptLine, ...]

    @property
    def interactive(self) -> int:
        return len(self.contacts)


@dataclass(frozen=True, slots=True)
class PatientBilling:
    patient: str  # "Patient/<id>"
    timezone: str
    first_reading: dt.date | None
    periods: tuple[DevicePeriod, ...]
    months: tuple[MonthSummary, ...]


# --- FHIR values -> local days and minutes -------------------------------------------------------
def local_day(value: str | None, tz: dt.tzinfo) -> dt.date | None:
    """The local calendar day of a FHIR date/dateTime/instant, or None if less precise than a day.

    A time with a zone is converted to `tz`; a date, or a time without a zone, is taken as written.
    """
    if not value or len(value) < 10:
        return None
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.date()
    try:
        return parsed.astimezone(tz).date()
    except OverflowError:  # at the edge of the calendar (0001-01-01, 9999-12-31): no local day
        return None


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) <= 10:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def observation_effective(obs: Mapping[str, Any]) -> str | None:
    period = obs.get("effectivePeriod")
    start = period.get("start") if isinstance(period, dict) else None
    for value in (obs.get("effectiveDateTime"), obs.get("effectiveInstant"), start):
        if isinstance(value, str):
            return value
    return None


def is_device_reading(obs: Mapping[str, Any]) -> bool:
    """An Observation that came from a device and was not withdrawn."""
    device = obs.get("device")
    has_device = isinstance(device, dict) and bool(device.get("reference"))
    return has_device and obs.get("status") not in ("entered-in-error", "cancelled")


def encounter_seconds(enc: Mapping[str, Any]) -> float | None:
    """Encounter.length (a Duration) if present, else the length of Encounter.period."""
    length = enc.get("length")
    if isinstance(length, dict) and isinstance(length.get("value"), int | float):
        unit = length.get("code") or length.get("unit") or "min"
        factor = _DURATION_SECONDS.get(str(unit))
        if factor is not None:
            return max(0.0, float(length["value"]) * factor)
    period = enc.get("period")
    if not isinstance(period, dict):
        return None
    start, end = _instant(period.get("start")), _instant(period.get("end"))
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()


def is_interactive_contact(enc: Mapping[str, Any]) -> bool:
    """A finished Encounter that is not an in-person visit (virtual visits: class VR)."""
    if enc.get("status") != "finished":
        return False
    klass = enc.get("class")
    code = klass.get("code") if isinstance(klass, dict) else None
    return code not in IN_PERSON_CLASSES


# --- Periods and codes ---------------------------------------------------------------------------
def period_bounds(first: dt.date, number: int) -> tuple[dt.date, dt.date]:
    start = first + dt.timedelta(days=PERIOD_DAYS * (number - 1))
    return start, start + dt.timedelta(days=PERIOD_DAYS - 1)


def overlapping_periods(first: dt.date, start: dt.date, end: dt.date) -> list[int]:
    """Numbers of the device periods that share at least one day with [start, end]."""
    if end < first:
        return []
    lo = max(0, (start - first).days) // PERIOD_DAYS + 1
    hi = (end - first).days // PERIOD_DAYS + 1
    return list(range(lo, hi + 1))


def period_codes(reading_days: int, first_period: bool) -> tuple[CptLine, ...]:
    codes: list[CptLine] = []
    if first_period and reading_days >= DAYS_FOR_99445:
        codes.append(CptLine("99453"))
    if reading_days >= DAYS_FOR_99454:
        codes.append(CptLine("99454"))
    elif reading_days >= DAYS_FOR_99445:
        codes.append(CptLine("99445"))
    return tuple(codes)


def month_codes(minutes: int, interactive: int) -> tuple[CptLine, ...]:
    if interactive < 1 or minutes < 10:
        return ()
    if minutes < 20:
        return (CptLine("99470"),)
    extra = (minutes - 20) // 20
    return (CptLine("99457"), CptLine("99458", extra)) if extra else (CptLine("99457"),)


def months_overlapping(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    out: list[tuple[dt.date, dt.date]] = []
    first = start.replace(day=1)
    while first <= end:
        nxt = (first + dt.timedelta(days=32)).replace(day=1)
        out.append((first, nxt - dt.timedelta(days=1)))
        first = nxt
    return out


def device_period(
    number: int, first: dt.date, readings: Iterable[Reading], as_of: dt.date
) -> DevicePeriod:
    start, end = period_bounds(first, number)
    last = min(end, as_of)  # readings dated after `as_of` are not known yet on that day
    inside = sorted((r for r in readings if start <= r.day <= last), key=lambda r: (r.day, r.ref))
    days = tuple(sorted({r.day for r in inside}))
    left_from = max(as_of, start)
    days_left = max(0, (end - left_from).days + 1)
    taken = sum(1 for d in days if d >= left_from)
    return DevicePeriod(
        number=number,
        start=start,
        end=end,
        days=days,
        evidence=tuple(r.ref for r in inside),
        codes=period_codes(len(days), number == 1),
        days_needed=max(0, DAYS_FOR_99454 - len(days)),
        days_left=days_left,
        days_open=days_left - taken,
        complete=as_of > end,
    )


def month_summary(
    start: dt.date, end: dt.date, contacts: Iterable[Contact], as_of: dt.date | None = None
) -> MonthSummary:
    last = end if as_of is None else min(end, as_of)
    inside = tuple(sorted((c for c in contacts if start <= c.day <= last), key=lambda c: c.ref))
    minutes = int(sum(c.seconds for c in inside) // 60)
    return MonthSummary(
        month=f"{start.year:04d}-{start.month:02d}",
        start=start,
        end=end,
        minutes=minutes,
        contacts=inside,
        codes=month_codes(minutes, len(inside)),
    )


def bill_patient(
    patient: str,
    timezone: str,
    first_reading: dt.date | None,
    readings: Iterable[Reading],
    contacts: Iterable[Contact],
    start: dt.date,
    end: dt.date,
    as_of: dt.date,
) -> PatientBilling:
    """Device periods and calendar months of one patient that overlap [start, end] (local days)."""
    readings = list(readings)
    periods: tuple[DevicePeriod, ...] = ()
    if first_reading is not None:
        periods = tuple(
            device_period(n, first_reading, readings, as_of)
            for n in overlapping_periods(first_reading, start, end)
        )
    contacts = list(contacts)
    months = tuple(
        month_summary(lo, hi, contacts, as_of) for lo, hi in months_overlapping(start, end)
    )
    return PatientBilling(patient, timezone, first_reading, periods, months)


def below_16(billing: PatientBilling) -> PatientBilling | None:
    """Only the device periods under 16 reading days (a patient without readings has one: none)."""
    periods = tuple(p for p in billing.periods if p.reading_days < DAYS_FOR_99454)
    if not periods and billing.first_reading is not None:
        return None
    return PatientBilling(
        billing.patient, billing.timezone, billing.first_reading, periods, billing.months
    )


def fetch_window(first: dt.date, start: dt.date, end: dt.date) -> tuple[dt.date, dt.date] | None:
    """The local days whose readings the periods overlapping [start, end] need."""
    numbers = overlapping_periods(first, start, end)
    if not numbers:
        return None
    return period_bounds(first, numbers[0])[0], period_bounds(first, numbers[-1])[1]
