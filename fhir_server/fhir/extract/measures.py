"""Converters for date, number and quantity parameters (see `convert` for the shared signature).

Dates become [low, high) µs ranges by their precision (`dates`). A Range gives a number or quantity
parameter its low and its high as two separate values: `IndexValue` holds points, and a point per
end still lets `gt`/`lt` searches find the range by either end.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from fhir_server.fhir.dates import parse_fhir_datetime_range, period_range
from fhir_server.fhir.extract.tokens import Convert, Out, text_of
from fhir_server.fhir.index_values import DateValue, NumberValue, QuantityValue

CURRENCY_SYSTEM: Final = "urn:iso:std:iso:4217"


def number_of(v: Any) -> float | None:
    if v.__class__ is bool or v is None:
        return None
    try:
        return float(v)  # the R4B models accept "72" for a decimal: read it too
    except (TypeError, ValueError):
        return None


def instant(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        try:
            low, high = parse_fhir_datetime_range(v, tz)
        except (ValueError, TypeError):
            return
        out.append(DateValue(p, low, high))

    return run


def _period_row(p: str, v: Any, tz: dt.tzinfo, out: Out) -> None:
    if v.__class__ is dict:
        try:
            found = period_range(text_of(v.get("start")), text_of(v.get("end")), tz)
        except (ValueError, TypeError):
            return
        if found is not None:
            out.append(DateValue(p, *found))


def period(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    return lambda v, out: _period_row(p, v, tz, out)


def timing(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    """From the earliest event's start to the latest event's end; else the repeat.boundsPeriod."""

    def run(v: Any, out: Out) -> None:
        if v.__class__ is not dict:
            return
        ranges = []
        for event in v.get("event") or ():
            try:
                ranges.append(parse_fhir_datetime_range(event, tz))
            except (ValueError, TypeError):
                continue
        if ranges:
            out.append(DateValue(p, min(r[0] for r in ranges), max(r[1] for r in ranges)))
        elif (repeat := v.get("repeat")).__class__ is dict:
            _period_row(p, repeat.get("boundsPeriod"), tz, out)

    return run


def number(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        if (value := number_of(v)) is not None:
            out.append(NumberValue(p, value))

    return run


def number_range(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        if v.__class__ is dict:
            for end in (v.get("low"), v.get("high")):
                if end.__class__ is dict and (value := number_of(end.get("value"))) is not None:
                    out.append(NumberValue(p, value))

    return run


def _quantity_row(p: str, v: Any, out: Out) -> None:
    if v.__class__ is dict and (value := number_of(v.get("value"))) is not None:
        system, code, unit = v.get("system"), v.get("code"), v.get("unit")
        out.append(QuantityValue(p, value, text_of(system), text_of(code), text_of(unit)))


def quantity(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    return lambda v, out: _quantity_row(p, v, out)


def quantity_range(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        if v.__class__ is dict:
            _quantity_row(p, v.get("low"), out)
            _quantity_row(p, v.get("high"), out)

    return run


def money(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    """Money as a quantity whose code is the ISO 4217 currency."""

    def run(v: Any, out: Out) -> None:
        if v.__class__ is dict and (value := number_of(v.get("value"))) is not None:
            currency = text_of(v.get("currency"))
            system = CURRENCY_SYSTEM if currency else None
            out.append(QuantityValue(p, value, system, currency, None))

    return run
