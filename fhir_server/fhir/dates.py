"""FHIR date, dateTime and instant values as half-open UTC ranges of integer microseconds.

A FHIR value stands for the whole interval its precision allows: `2024-03` is all of March,
`2024-03-05T10:15` is that minute, `2024-03-05T10:15:00.25` is [.25 s, .26 s). Both stored values
and search values are such ranges, which is what makes FHIR's date prefixes (eq, gt, sa, eb, ap, ...)
plain interval comparisons. A value without a zone (a date, or a time without `Z`/offset) is read in
the configured zone `tz`; a value with a zone ignores `tz`.

Used by extraction (write path) and by the search-query parser, so everything here is pure.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time
from typing import Final

from fhir_server.fhir.index_values import DATE_MAX, DATE_MIN

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "datetime_to_us",
    "fhir_datetime_precision",
    "now_us",
    "parse_fhir_datetime_range",
    "period_range",
    "to_instant_text",
    "us_to_datetime",
]

_PATTERN: Final = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<z>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,  # \d must not match other scripts' digits
)
_NAIVE_EPOCH: Final = dt.datetime(1970, 1, 1)
_US_PER_DAY: Final = 86_400_000_000
_US_PER_SECOND: Final = 1_000_000
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_fhir_datetime_range(text: str, tz: dt.tzinfo) -> tuple[int, int]:
    """[low, high) in µs since the epoch (UTC) covered by a FHIR date/dateTime/instant value.

    Accepts YYYY, YYYY-MM, YYYY-MM-DD and YYYY-MM-DDThh:mm[:ss[.fff…]][Z|±hh:mm]. Minutes precision
    and a missing zone are not valid in stored FHIR dateTimes but are valid search values, so both
    are accepted here. Raises ValueError on anything else (including `24:00`).
    """
    return _parse_range(text, tz)


@functools.lru_cache(maxsize=4096)
def _parse_range(text: str, tz: dt.tzinfo) -> tuple[int, int]:
    # Cached: a batch of writes repeats the same timestamps (effective, issued, encounter dates).
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid FHIR date/dateTime {text!r}: expected YYYY[-MM[-DD[Thh:mm[:ss]]]]"
        )
    y, m, d, hh, mm, ss, frac, zone = match.groups()
    year, month, day = int(y), int(m or 1), int(d or 1)
    if year == 0 or not 1 <= month <= 12:
        raise ValueError(f"invalid FHIR date {text!r}: year or month out of range")
    if not 1 <= day <= _days_in_month(year, month):
        raise ValueError(f"invalid FHIR date {text!r}: no such day")
    days = _days_from_civil(year, month, day)
    if hh is None:
        if m is None:
            end_days = _days_from_civil(year + 1, 1, 1)
        elif d is None:
            end_days = _days_from_civil(year + (month == 12), month % 12 + 1, 1)
        else:
            end_days = days + 1
        return _local_us(days, 0, tz), _local_us(end_days, 0, tz)
    hour, minute, second = int(hh), int(mm), int(ss or 0)
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"invalid FHIR time in {text!r}: hour, minute or second out of range")
    width = _US_PER_SECOND if ss is not None else 60 * _US_PER_SECOND
    fraction = 0
    if frac is not None:
        digits = frac[:6]  # finer than µs: kept as the µs that contains it
        fraction = int(digits.ljust(6, "0"))
        width = 10 ** (6 - len(digits))
    # A leap second (:60) cannot be represented in POSIX time: read it as the last second.
    in_day = ((hour * 60 + minute) * 60 + min(second, 59)) * _US_PER_SECOND + fraction
    if zone is None:
        low = _local_us(days, in_day, tz)
    else:
        low = days * _US_PER_DAY + in_day - _offset_us(zone)
    return low, low + width


def fhir_datetime_precision(text: str) -> str:
    """`year`, `month`, `day`, `minute`, `second` or `fraction` (raises ValueError if malformed)."""
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid FHIR date/dateTime {text!r}")
    for group, name in (("f", "fraction"), ("S", "second"), ("H", "minute"), ("d", "day")):
        if match.group(group) is not None:
            return name
    return "month" if match.group("m") is not None else "year"


def period_range(start: str | None, end: str | None, tz: dt.tzinfo) -> tuple[int, int] | None:
    """The range of a Period: from its start's low to its end's high; a missing end is open."""
    if start is None and end is None:
        return None
    low = parse_fhir_datetime_range(start, tz)[0] if start is not None else DATE_MIN
    high = parse_fhir_datetime_range(end, tz)[1] if end is not None else DATE_MAX
    return low, high


def now_us() -> int:
    return time.time_ns() // 1000


def datetime_to_us(value: dt.datetime) -> int:
    """An aware datetime as µs since the epoch (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


def us_to_datetime(us: int) -> dt.datetime:
    """µs since the epoch as an aware UTC datetime (ValueError outside years 1..9999)."""
    try:
        return _EPOCH + dt.timedelta(microseconds=us)
    except OverflowError:
        raise ValueError(f"instant {us} µs is outside the years 1..9999") from None


def to_instant_text(us: int) -> str:
    """ISO 8601 UTC text with `Z`: milliseconds shown when present, microseconds when needed."""
    seconds, micro = divmod(us, 1_000_000)
    try:
        text = _second_text(seconds)  # every write stamps one; most share their second
    except ValueError:
        raise ValueError(f"instant {us} µs is outside the years 1..9999") from None
    if micro:
        text += f".{micro:06d}" if micro % 1000 else f".{micro // 1000:03d}"
    return text + "Z"


@functools.lru_cache(maxsize=256)
def _second_text(seconds: int) -> str:
    value = us_to_datetime(seconds * 1_000_000)
    # Not strftime: it drops the zero padding of years below 1000 on some platforms.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year; no datetime limits)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _offset_us(zone: str) -> int:
    if zone == "Z":
        return 0
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError(f"invalid time zone offset {zone!r}")
    sign = -1 if zone[0] == "-" else 1
    return sign * (hours * 60 + minutes) * 60 * _US_PER_SECOND


_WALL_MIN: Final = _days_from_civil(1, 1, 1) * _US_PER_DAY
_WALL_MAX: Final = _days_from_civil(9999, 12, 31) * _US_PER_DAY


def _local_us(days: int, in_day: int, tz: dt.tzinfo) -> int:
    """µs since the epoch of local wall time `in_day` µs into day `days` (since 1970) in `tz`."""
    wall = days * _US_PER_DAY + in_day
    if tz is dt.UTC:
        return wall
    # The zone's offset at that wall time; outside years 1..9999 the nearest representable one.
    clamped = min(max(wall, _WALL_MIN), _WALL_MAX)
    offset = tz.utcoffset(_NAIVE_EPOCH + dt.timedelta(microseconds=clamped))
    return wall - (offset // dt.timedelta(microseconds=1) if offset is not None else 0)
