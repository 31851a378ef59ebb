"""Parsing one search parameter value of each type into a criterion. Pure functions.

Escaping (`\\,` `\\|` `\\$` `\\\\`) follows the R4 search page; prefixes apply to number, date and
quantity; the implicit precision of a number is half a unit of its last digit.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from decimal import Decimal, InvalidOperation
from typing import cast

from fhir_server.errors import BadRequest
from fhir_server.fhir.dates import parse_fhir_datetime_range
from fhir_server.fhir.text import normalize_string
from fhir_server.search.query import (
    DateCriterion,
    NumberCriterion,
    Prefix,
    QuantityCriterion,
    ReferenceCriterion,
    StringCriterion,
    TokenCriterion,
    UriCriterion,
)

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIX_RE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[0-9+\-])")
_REF_RE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$")


def split_unescaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on `sep` not preceded by a backslash, then unescape each part."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", text)


def split_prefix(param: str, text: str) -> tuple[Prefix, str]:
    m = _PREFIX_RE.match(text)
    if m:
        return cast(Prefix, m.group(1)), text[2:]
    return "eq", text


def _number(param: str, text: str) -> tuple[float, float, float]:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise BadRequest(
            f"Invalid number '{text}' for parameter '{param}'", expression=[param]
        ) from None
    if not d.is_finite():
        raise BadRequest(f"Invalid number '{text}' for parameter '{param}'", expression=[param])
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5) * Decimal(10) ** (exponent - 1)
    return float(d), float(d - half), float(d + half)


def parse_token(param: str, text: str, modifier: str | None) -> TokenCriterion:
    if modifier == "text":
        return TokenCriterion(param, None, None, text=normalize_string(unescape(text)))
    negate = modifier == "not"
    parts = split_unescaped(text, "|", 1)
    if len(parts) == 1:
        return TokenCriterion(
            param, None, unescape(parts[0]) or None, any_system=True, negate=negate
        )
    system, code = (unescape(p) for p in parts)
    if not system and not code:
        raise BadRequest(f"Empty token value for parameter '{param}'", expression=[param])
    return TokenCriterion(param, system or None, code or None, negate=negate)


def parse_string(param: str, text: str, modifier: str | None) -> StringCriterion:
    value = unescape(text)
    if modifier == "exact":
        return StringCriterion(param, value, "exact")
    if modifier == "contains":
        return StringCriterion(param, normalize_string(value), "contains")
    return StringCriterion(param, normalize_string(value), "prefix")


def parse_date(param: str, text: str, tz: tzinfo) -> DateCriterion:
    prefix, rest = split_prefix(param, text)
    try:
        low, high = parse_fhir_datetime_range(rest, tz)
    except ValueError as exc:
        raise BadRequest(
            f"Invalid date '{text}' for parameter '{param}': {exc}", expression=[param]
        ) from None
    return DateCriterion(param, prefix, low, high)


def parse_number(param: str, text: str) -> NumberCriterion:
    prefix, rest = split_prefix(param, text)
    value, low, high = _number(param, rest)
    if prefix == "ap":  # approximately: within 10 % of the value
        margin = abs(value) * 0.1
        low, high = min(low, value - margin), max(high, value + margin)
    return NumberCriterion(param, prefix, value, low, high)


def parse_quantity(param: str, text: str) -> QuantityCriterion:
    parts = split_unescaped(text, "|")
    if len(parts) not in (1, 3):
        raise BadRequest(
            f"Invalid quantity '{text}' for parameter '{param}': use [prefix]number|system|code",
            expression=[param],
        )
    prefix, rest = split_prefix(param, parts[0])
    value, low, high = _number(param, rest)
    if prefix == "ap":
        margin = abs(value) * 0.1
        low, high = min(low, value - margin), max(high, value + margin)
    system = code = None
    if len(parts) == 3:
        system = unescape(parts[1]) or None
        code = unescape(parts[2]) or None
    return QuantityCriterion(param, prefix, value, low, high, system, code)


def parse_reference(
    param: str, text: str, type_modifier: str | None, base_url: str, targets: tuple[str, ...]
) -> ReferenceCriterion:
    value = unescape(text)
    if not value:
        raise BadRequest(f"Empty reference value for parameter '{param}'", expression=[param])
    local = value
    if value.startswith(base_url.rstrip("/") + "/"):
        local = value[len(base_url.rstrip("/")) + 1 :]
    m = _REF_RE.match(local)
    if m:
        rtype, rid = m.group(1), m.group(2)
        if type_modifier and type_modifier != rtype:
            raise BadRequest(
                f"Parameter '{param}:{type_modifier}' given a reference to {rtype}",
                expression=[param],
            )
        return ReferenceCriterion(param, rtype, rid)
    if "://" in value or value.startswith("urn:"):
        return ReferenceCriterion(param, None, None, url=value)
    if "/" in value:
        raise BadRequest(f"Invalid reference '{value}' for parameter '{param}'", expression=[param])
    if type_modifier:
        return ReferenceCriterion(param, type_modifier, value)
    if len(targets) == 1:
        return ReferenceCriterion(param, targets[0], value)
    return ReferenceCriterion(param, None, value)


def parse_uri(param: str, text: str, modifier: str | None) -> UriCriterion:
    mode = modifier if modifier in ("above", "below") else "exact"
    return UriCriterion(param, unescape(text), mode)  # type: ignore[arg-type]
