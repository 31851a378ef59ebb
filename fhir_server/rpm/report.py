"""RPM billing results as a FHIR Parameters resource or as CSV. Pure, no I/O.

The Parameters shape is documented in profiles/OperationDefinition-rpm-billing.json.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from fhir_server.rpm.billing import CPT, CptLine, DevicePeriod, MonthSummary, PatientBilling

CSV_COLUMNS = (
    "patient", "timezone", "first_reading", "row", "number", "start", "end", "complete",
    "reading_days", "days_needed_for_16", "days_left", "days_left_without_reading",
    "can_reach_16", "minutes", "interactive_communications", "cpt_codes", "evidence",
)  # fmt: skip


def _p(name: str, kind: str, value: Any) -> dict[str, Any]:
    return {"name": name, f"value{kind}": value}


def _codes(codes: Sequence[CptLine]) -> list[dict[str, Any]]:
    return [
        {
            "name": "code",
            "part": [
                _p("code", "Coding", {"system": CPT, "code": c.code, "display": c.display}),
                _p("units", "Integer", c.units),
            ],
        }
        for c in codes
    ]


def _period(p: DevicePeriod) -> dict[str, Any]:
    parts = [
        _p("number", "Integer", p.number),
        _p("start", "Date", p.start.isoformat()),
        _p("end", "Date", p.end.isoformat()),
        _p("complete", "Boolean", p.complete),
        _p("readingDays", "Integer", p.reading_days),
        _p("daysNeededFor16", "Integer", p.days_needed),
        _p("daysLeft", "Integer", p.days_left),
        _p("daysLeftWithoutReading", "Integer", p.days_open),
        _p("canReach16", "Boolean", p.can_reach_16),
        *_codes(p.codes),
        *(_p("readingDay", "Date", d.isoformat()) for d in p.days),
        *(_p("evidence", "Reference", {"reference": ref}) for ref in p.evidence),
    ]
    return {"name": "period", "part": parts}


def _month(m: MonthSummary) -> dict[str, Any]:
    parts = [
        _p("month", "String", m.month),
        _p("start", "Date", m.start.isoformat()),
        _p("end", "Date", m.end.isoformat()),
        _p("minutes", "Integer", m.minutes),
        _p("interactiveCommunications", "Integer", m.interactive),
        *_codes(m.codes),
        *(
            {
                "name": "evidence",
                "part": [
                    _p("encounter", "Reference", {"reference": c.ref}),
                    _p("date", "Date", c.day.isoformat()),
                    _p("minutes", "Decimal", round(c.seconds / 60, 2)),
                ],
            }
            for c in m.contacts
        ),
    ]
    return {"name": "month", "part": parts}


def _patient(b: PatientBilling) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        _p("patient", "Reference", {"reference": b.patient}),
        _p("timezone", "Code", b.timezone),
    ]
    if b.first_reading is not None:
        parts.append(_p("firstReading", "Date", b.first_reading.isoformat()))
    parts += [_period(p) for p in b.periods]
    parts += [_month(m) for m in b.months]
    return {"name": "patient", "part": parts}


def to_parameters(
    results: Sequence[PatientBilling], start: dt.date, end: dt.date, as_of: dt.date
) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            _p("start", "Date", start.isoformat()),
            _p("end", "Date", end.isoformat()),
            _p("asOf", "Date", as_of.isoformat()),
            *(_patient(b) for b in results),
        ],
    }


def _codes_text(codes: Sequence[CptLine]) -> str:
    return ";".join(c.text() for c in codes)


def to_csv(results: Sequence[PatientBilling]) -> str:
    """One row per device period and one per calendar month of each patient.

    `evidence` is compact here: the reading days of a period, the Encounters of a month (the
    Parameters answer lists every Observation counted).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for b in results:
        first = b.first_reading.isoformat() if b.first_reading else ""
        head = [b.patient, b.timezone, first]
        for p in b.periods:
            writer.writerow([
                *head, "period", p.number, p.start.isoformat(), p.end.isoformat(),
                str(p.complete).lower(), p.reading_days, p.days_needed, p.days_left, p.days_open,
                str(p.can_reach_16).lower(), "", "", _codes_text(p.codes),
                " ".join(d.isoformat() for d in p.days),
            ])  # fmt: skip
        for m in b.months:
            writer.writerow([
                *head, "month", m.month, m.start.isoformat(), m.end.isoformat(), "", "", "", "",
                "", "", m.minutes, m.interactive, _codes_text(m.codes),
                " ".join(c.ref for c in m.contacts),
            ])  # fmt: skip
        if not b.periods and not b.months:
            writer.writerow([*head, "none", *([""] * (len(CSV_COLUMNS) - 4))])
    return out.getvalue()
