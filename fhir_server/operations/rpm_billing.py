"""`$rpm-billing` on `Patient/[id]` and at system level: RPM billing periods from stored data.

Data is read through storage searches (so the request's view of the store applies); the counting
rules are pure functions in `fhir_server/rpm/billing.py`; the answer is a Parameters resource
(profiles/OperationDefinition-rpm-billing.json) or, at system level, CSV on request.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_server.api.negotiation import CSV, response_type
from fhir_server.errors import BadRequest, NotAcceptable
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import parse_fhir_datetime_range
from fhir_server.interactions.common import prefer_lenient
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.operations.fetch import read_current, search_all
from fhir_server.operations.params import (
    bool_param,
    check_names,
    date_param,
    operation_params,
    single,
)
from fhir_server.operations.registry import Operation, OperationTarget
from fhir_server.rpm import billing
from fhir_server.rpm.report import to_csv, to_parameters
from fhir_server.search.query import (
    Clause,
    Criterion,
    DateCriterion,
    HasCriterion,
    IdCriterion,
    MissingCriterion,
    ReferenceCriterion,
    SearchQuery,
    SortKey,
)
from fhir_server.storage.base import StoredResource

DEFINITION = "https://fhir-server.dev/fhir/OperationDefinition/rpm-billing"
TZ_EXTENSION = "http://hl7.org/fhir/StructureDefinition/tz-code"
MAX_RANGE_DAYS = 366
MIN_DATE, MAX_DATE = dt.date(1900, 1, 1), dt.date(2999, 12, 31)  # start, end, month, asOf
KNOWN = frozenset({"month", "start", "end", "asOf", "tz", "below16", "group"})


def _zone(name: str, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"Unknown time zone '{name}'", expression=[what]) from None


def _in_bounds(day: dt.date, name: str) -> dt.date:
    """Dates far from today are refused: they are mistakes, and day arithmetic on them (periods,
    months, time zones) would leave the calendar (years 1..9999)."""
    if not MIN_DATE <= day <= MAX_DATE:
        raise BadRequest(f"{name} must be between {MIN_DATE.isoformat()} and "
                         f"{MAX_DATE.isoformat()}, not {day.isoformat()}",
                         expression=[name])  # fmt: skip
    return day


def _date(params: list[tuple[str, str]], name: str) -> dt.date | None:
    day = date_param(params, name)
    return None if day is None else _in_bounds(day, name)


def _month(text: str) -> tuple[dt.date, dt.date]:
    try:
        first = dt.date.fromisoformat(f"{text}-01")
    except ValueError:
        raise BadRequest(f"month must be YYYY-MM, not '{text}'", expression=["month"]) from None
    if len(text) != 7:
        raise BadRequest(f"month must be YYYY-MM, not '{text}'", expression=["month"])
    if not MIN_DATE <= first <= MAX_DATE:
        raise BadRequest(f"month must be between {MIN_DATE.isoformat()[:7]} and "
                         f"{MAX_DATE.isoformat()[:7]}, not {text}", expression=["month"])  # fmt: skip
    return billing.months_overlapping(first, first)[0]


def _range(params: list[tuple[str, str]], as_of: dt.date) -> tuple[dt.date, dt.date]:
    """`month`, or `start`/`end` (either may be left out), or by default the day `asOf`."""
    month = single(params, "month")
    start, end = _date(params, "start"), _date(params, "end")
    if month is not None:
        if start is not None or end is not None:
            raise BadRequest("Give either month or start/end, not both", expression=["month"])
        return _month(month)
    if start is None:
        start = end or as_of
    if end is None:
        end = max(start, as_of)
    if end < start:
        raise BadRequest("end is before start", expression=["end"])
    if (end - start).days >= MAX_RANGE_DAYS:
        raise BadRequest(f"The range from start to end may span at most {MAX_RANGE_DAYS} days",
                         expression=["end"])  # fmt: skip
    return start, end


def _patient_zone(patient: dict[str, Any], default: ZoneInfo) -> ZoneInfo:
    for ext in patient.get("extension", []):
        if isinstance(ext, dict) and ext.get("url") == TZ_EXTENSION:
            try:
                return ZoneInfo(str(ext.get("valueCode")))
            except (ZoneInfoNotFoundError, ValueError):
                return default
    return default


def _window(days: tuple[dt.date, dt.date], tz: ZoneInfo) -> tuple[Criterion, Criterion]:
    """Date criteria for [first day, last day] local, widened by a day for values without zone."""
    low = parse_fhir_datetime_range((days[0] - dt.timedelta(days=1)).isoformat(), tz)[0]
    high = parse_fhir_datetime_range((days[1] + dt.timedelta(days=1)).isoformat(), tz)[1]
    return DateCriterion("date", "gt", low, low), DateCriterion("date", "lt", high, high)


def _readings_query(pid: str, extra: tuple[Clause, ...] = (), count: int = 0) -> SearchQuery:
    return SearchQuery(
        resource_types=("Observation",),
        clauses=(
            Clause((ReferenceCriterion("subject", "Patient", pid),)),
            Clause((MissingCriterion("device", "reference", False),)),
            *extra,
        ),
        sort=(SortKey("date", "date"),),
        count=count,
    )


async def _first_reading(ctx: Services, pid: str, tz: ZoneInfo) -> dt.date | None:
    async for stored in search_all(ctx, _readings_query(pid, count=20)):
        obs = jsonio.loads(stored.body)
        if billing.is_device_reading(obs):
            day = billing.local_day(billing.observation_effective(obs), tz)
            if day is not None:
                return day
    return None


async def _readings(
    ctx: Services, pid: str, days: tuple[dt.date, dt.date], tz: ZoneInfo
) -> list[billing.Reading]:
    gt, lt = _window(days, tz)
    out: list[billing.Reading] = []
    async for stored in search_all(ctx, _readings_query(pid, (Clause((gt,)), Clause((lt,))))):
        obs = jsonio.loads(stored.body)
        day = billing.local_day(billing.observation_effective(obs), tz)
        if billing.is_device_reading(obs) and day is not None:
            out.append(billing.Reading(f"Observation/{stored.id}", day))
    return out


async def _contacts(
    ctx: Services, pid: str, days: tuple[dt.date, dt.date], tz: ZoneInfo
) -> list[billing.Contact]:
    gt, lt = _window(days, tz)
    query = SearchQuery(
        resource_types=("Encounter",),
        clauses=(
            Clause((ReferenceCriterion("subject", "Patient", pid),)),
            Clause((gt,)),
            Clause((lt,)),
        ),
    )
    out: list[billing.Contact] = []
    async for stored in search_all(ctx, query):
        enc = jsonio.loads(stored.body)
        period = enc.get("period")
        start = period.get("start") if isinstance(period, dict) else None
        day = billing.local_day(start if isinstance(start, str) else None, tz)
        seconds = billing.encounter_seconds(enc)
        if billing.is_interactive_contact(enc) and day is not None and seconds is not None:
            out.append(billing.Contact(f"Encounter/{stored.id}", day, seconds))
    return out


async def _bill(
    ctx: Services,
    patient: StoredResource,
    zone: ZoneInfo | None,
    start: dt.date,
    end: dt.date,
    as_of: dt.date,
) -> billing.PatientBilling:
    tz = zone or _patient_zone(jsonio.loads(patient.body), ctx_zone(ctx))
    pid = patient.id
    first = await _first_reading(ctx, pid, tz)
    readings: list[billing.Reading] = []
    window = billing.fetch_window(first, start, end) if first is not None else None
    if window is not None:
        readings = await _readings(ctx, pid, window, tz)
    months = billing.months_overlapping(start, end)
    contacts = await _contacts(ctx, pid, (months[0][0], months[-1][1]), tz)
    return billing.bill_patient(
        f"Patient/{pid}", str(tz.key), first, readings, contacts, start, end, as_of
    )


def ctx_zone(ctx: Services) -> ZoneInfo:
    return _zone(ctx.settings.timezone, "tz")


def _rpm_patients_query(group: str | None) -> SearchQuery:
    """Patients with a device assigned or a device reading: the RPM patients."""
    rpm = Clause((
        HasCriterion("Device", "patient", ()),
        HasCriterion("Observation", "subject",
                     (Clause((MissingCriterion("device", "reference", False),)),)),
    ))  # fmt: skip
    clauses = [rpm]
    if group is not None:
        gid = group.removeprefix("Group/")
        clauses.append(
            Clause((HasCriterion("Group", "member", (Clause((IdCriterion((gid,)),)),)),))
        )
    return SearchQuery(("Patient",), tuple(clauses), sort=(SortKey("_id", "special"),))


def wants_csv(req: FhirRequest) -> bool:
    """CSV preferred (`_format=csv`, or text/csv first in Accept); the HTTP layer negotiated."""
    try:
        return response_type(req.header("accept"), req.param("_format")) == CSV
    except NotAcceptable:
        return False


async def rpm_billing(ctx: Services, req: FhirRequest, target: OperationTarget) -> FhirResponse:
    params = operation_params(req)
    ignored = check_names(params, KNOWN, prefer_lenient(req))
    params = [(k, v) for k, v in params if k not in ignored]
    tz_name = single(params, "tz")
    zone = _zone(tz_name, "tz") if tz_name else None
    as_of = _date(params, "asOf") or dt.datetime.now(zone or ctx_zone(ctx)).date()
    start, end = _range(params, as_of)
    only_below = bool_param(params, "below16")
    group = single(params, "group")
    if target.id is not None:
        if group is not None:
            raise BadRequest("group applies to the system-level call only", expression=["group"])
        patients = [await read_current(ctx, "Patient", target.id)]
    else:
        patients = [p async for p in search_all(ctx, _rpm_patients_query(group))]
    results: list[billing.PatientBilling] = []
    for patient in patients:
        result: billing.PatientBilling | None = await _bill(ctx, patient, zone, start, end, as_of)
        if only_below and result is not None:
            result = billing.below_16(result)
        if result is not None:
            results.append(result)
    if wants_csv(req) and target.id is None:  # CSV for the system-level summary only
        name = f"rpm-billing-{start.isoformat()}-{end.isoformat()}.csv"
        headers = {
            "Content-Type": f"{CSV}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        return FhirResponse(200, to_csv(results).encode("utf-8"), headers)
    return FhirResponse(200, jsonio.dumps(to_parameters(results, start, end, as_of)), {})


OPERATIONS = [
    Operation(
        "rpm-billing",
        rpm_billing,
        system=True,
        instance_level=True,
        types=frozenset({"Patient"}),
        definition=DEFINITION,
    )
]
