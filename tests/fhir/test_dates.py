"""FHIR date/dateTime/instant values as half-open µs ranges (fhir_server.fhir.dates)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.fhir.dates import (
    DATE_MAX,
    DATE_MIN,
    datetime_to_us,
    fhir_datetime_precision,
    now_us,
    parse_fhir_datetime_range,
    period_range,
    to_instant_text,
    us_to_datetime,
)

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
SECOND = 1_000_000
DAY = 86_400 * SECOND


def us(
    year: int,
    month: int = 1,
    day: int = 1,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    micro: int = 0,
) -> int:
    return datetime_to_us(dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", us(2024, 1, 1), us(2025, 1, 1)),
        ("2024-03", us(2024, 3, 1), us(2024, 4, 1)),
        ("2024-12", us(2024, 12, 1), us(2025, 1, 1)),
        ("2024-02", us(2024, 2, 1), us(2024, 3, 1)),
        ("2024-02-29", us(2024, 2, 29), us(2024, 3, 1)),
        ("2024-03-05T10:15", us(2024, 3, 5, 10, 15), us(2024, 3, 5, 10, 16)),
        ("2024-03-05T10:15:30Z", us(2024, 3, 5, 10, 15, 30), us(2024, 3, 5, 10, 15, 31)),
        (
            "2024-03-05T10:15:30.5Z",
            us(2024, 3, 5, 10, 15, 30, 500_000),
            us(2024, 3, 5, 10, 15, 30, 600_000),
        ),
        (
            "2024-03-05T10:15:30.123Z",
            us(2024, 3, 5, 10, 15, 30, 123_000),
            us(2024, 3, 5, 10, 15, 30, 124_000),
        ),
        (
            "2024-03-05T10:15:30.1234567Z",
            us(2024, 3, 5, 10, 15, 30, 123_456),
            us(2024, 3, 5, 10, 15, 30, 123_457),
        ),
        ("2024-03-05T10:15:30+02:00", us(2024, 3, 5, 8, 15, 30), us(2024, 3, 5, 8, 15, 31)),
        ("2024-03-05T10:15:30-05:30", us(2024, 3, 5, 15, 45, 30), us(2024, 3, 5, 15, 45, 31)),
        ("2024-03-05T00:00:00+14:00", us(2024, 3, 4, 10), us(2024, 3, 4, 10, 0, 1)),
        ("1969-12-31T23:59:59Z", -SECOND, 0),
        ("0001-01-01T00:00:00Z", us(1, 1, 1), us(1, 1, 1, 0, 0, 1)),
    ],
)
def test_precisions_in_utc(text: str, low: int, high: int) -> None:
    assert parse_fhir_datetime_range(text, UTC) == (low, high)


def test_year_9999_ends_beyond_datetime() -> None:
    low, high = parse_fhir_datetime_range("9999", UTC)
    assert low == us(9999, 1, 1)
    assert high == us(9999, 12, 31) + DAY
    low, high = parse_fhir_datetime_range("9999-12", BERLIN)
    assert high - low == 31 * DAY


def test_values_without_zone_are_read_in_the_configured_zone() -> None:
    # A date-only value covers that local day/month, a zone-less time is local wall time.
    assert parse_fhir_datetime_range("2024-03-05", BERLIN) == (
        us(2024, 3, 4, 23),
        us(2024, 3, 5, 23),
    )
    assert parse_fhir_datetime_range("2024-03", BERLIN) == (
        us(2024, 2, 29, 23),
        us(2024, 3, 31, 22),
    )
    assert parse_fhir_datetime_range("2024-07-01T12:00", BERLIN)[0] == us(2024, 7, 1, 10)
    # An explicit zone wins over the configured one.
    assert parse_fhir_datetime_range("2024-07-01T12:00:00Z", BERLIN)[0] == us(2024, 7, 1, 12)


def test_daylight_saving_days_are_23_and_25_hours() -> None:
    low, high = parse_fhir_datetime_range("2024-03-31", BERLIN)
    assert high - low == 23 * 3600 * SECOND
    low, high = parse_fhir_datetime_range("2024-10-27", BERLIN)
    assert high - low == 25 * 3600 * SECOND


def test_leap_second_reads_as_the_last_second() -> None:
    low, high = parse_fhir_datetime_range("2016-12-31T23:59:60Z", UTC)
    assert (low, high) == (us(2016, 12, 31, 23, 59, 59), us(2017, 1, 1))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "24",
        "2024-3",
        "2024-13",
        "2024-00",
        "2023-02-29",
        "2024-04-31",
        "0000",
        "2024-03-05T24:00",
        "2024-03-05T24:00:00Z",
        "2024-03-05T10:60",
        "2024-03-05T10",
        "2024-03-05 10:00",
        "2024-03-05T10:00:00+15:00",
        "2024-03-05T10:00:00+0100",
        "2024-03-05Z",
        "\uff12\uff10\uff12\uff14",  # full-width digits
        " 2024",
        "2024-03-05T10:00:00.Z",
    ],
)
def test_malformed_values_raise(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_fhir_datetime_range(text, UTC)


def test_precision_names() -> None:
    assert [
        fhir_datetime_precision(t)
        for t in (
            "2024",
            "2024-03",
            "2024-03-05",
            "2024-03-05T10:00",
            "2024-03-05T10:00:00",
            "2024-03-05T10:00:00.1Z",
        )
    ] == ["year", "month", "day", "minute", "second", "fraction"]
    with pytest.raises(ValueError):
        fhir_datetime_precision("March")


def test_period_range_open_ends() -> None:
    assert period_range("2024-01", None, UTC) == (us(2024, 1, 1), DATE_MAX)
    assert period_range(None, "2024-01", UTC) == (DATE_MIN, us(2024, 2, 1))
    assert period_range("2024-01-01", "2024-01-02", UTC) == (us(2024, 1, 1), us(2024, 1, 3))
    assert period_range(None, None, UTC) is None


def test_instant_text() -> None:
    assert to_instant_text(0) == "1970-01-01T00:00:00Z"
    assert to_instant_text(1_500) == "1970-01-01T00:00:00.001500Z"
    assert to_instant_text(123_000) == "1970-01-01T00:00:00.123Z"
    assert to_instant_text(us(1, 1, 1)) == "0001-01-01T00:00:00Z"
    with pytest.raises(ValueError):
        to_instant_text(DATE_MAX)


def test_now_and_conversions() -> None:
    before = datetime_to_us(dt.datetime.now(UTC))
    assert before - SECOND <= now_us() <= before + 60 * SECOND
    assert us_to_datetime(us(2024, 3, 5, 1, 2, 3, 4)) == dt.datetime(
        2024, 3, 5, 1, 2, 3, 4, tzinfo=UTC
    )
    assert datetime_to_us(dt.datetime(1970, 1, 1, 0, 0, 1)) == SECOND  # naive is UTC


@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
def test_instant_text_round_trips(value: dt.datetime) -> None:
    micros = datetime_to_us(value.replace(tzinfo=UTC))
    low, high = parse_fhir_datetime_range(to_instant_text(micros), UTC)
    assert low == micros
    assert 0 < high - low <= SECOND


@given(
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
    st.sampled_from(["year", "month", "day"]),
)
def test_dates_cover_their_calendar_span(day: dt.date, precision: str) -> None:
    text = {
        "year": f"{day.year:04d}",
        "month": f"{day.year:04d}-{day.month:02d}",
        "day": day.isoformat(),
    }[precision]
    low, high = parse_fhir_datetime_range(text, UTC)
    start = {"year": day.replace(month=1, day=1), "month": day.replace(day=1), "day": day}[
        precision
    ]
    assert low == datetime_to_us(dt.datetime.combine(start, dt.time(), UTC))
    assert high > low
    assert low <= datetime_to_us(dt.datetime.combine(day, dt.time(), UTC)) < high
