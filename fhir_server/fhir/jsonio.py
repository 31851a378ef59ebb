"""FHIR JSON in and out, keeping decimals exact.

FHIR requires decimals to keep their precision (`1.50` stays `1.50`), so request bodies are parsed
with the standard library and `parse_float=Decimal`, and written with orjson, which emits each
Decimal's own text through `orjson.Fragment`. Stored bytes are served as they are; a stored
resource is embedded into a Bundle with `orjson.Fragment(body)`, never re-parsed.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from fhir_server.errors import BadRequest

_MAX_INT_DIGITS = 4300  # Python's own guard against quadratic int parsing


class ExactDecimal(Decimal):
    """A decimal written with an exponent (`1.5e2`), which keeps its text: `str(Decimal)` would
    give `1.5E+2`, and FHIR requires a decimal to read back as it was sent."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> ExactDecimal:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


def _parse_float(text: str) -> Decimal:
    return ExactDecimal(text) if "e" in text or "E" in text else Decimal(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key '{key}' in an object")
            seen.add(key)
    return obj


def decimal_text(value: Decimal) -> str:
    """A decimal as it was sent (`1.50`, `1.5e2`)."""
    return value.text if isinstance(value, ExactDecimal) else str(value)


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise TypeError("NaN and Infinity are not FHIR decimals")
        return orjson.Fragment(decimal_text(obj).encode())
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes | str, *, max_depth: int = 100) -> Any:
    """Parse a request body; raise BadRequest (400) for malformed or too deeply nested JSON."""
    try:
        value = json.loads(
            body,
            parse_float=_parse_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,  # JSON objects with a repeated key are refused
        )
    except RecursionError:
        raise BadRequest(f"JSON nesting deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Malformed JSON: {exc}") from None
    if _depth_exceeds(value, max_depth):
        raise BadRequest(f"JSON nesting deeper than {max_depth} levels")
    return value


def loads_own(body: bytes) -> Any:
    """Parse JSON this server wrote with `dumps` (stored bodies, the validation pool's chunks): it
    was checked when it came in, so the duplicate-key and depth checks, a third of `loads`' cost,
    are not made again."""
    return json.loads(body, parse_float=_parse_float)


# Depth limits up to this are checked recursively (fast); deeper ones with an explicit stack,
# which cannot run into Python's recursion limit.
_RECURSIVE_CHECK_UP_TO = 200


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether a container sits deeper than `limit` (the outermost is at depth 1)."""
    if limit <= _RECURSIVE_CHECK_UP_TO:
        return _deeper(value, limit)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def _deeper(value: Any, limit: int) -> bool:
    # Type-exact recursion: a quarter of the explicit stack's cost on request bodies.
    if limit <= 0:
        return True
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list:
        items = value
    else:
        return False
    for item in items:
        k = type(item)
        if (k is dict or k is list) and _deeper(item, limit - 1):
            return True
    return False


def orjson_fragment(body: bytes) -> orjson.Fragment:
    """Embed already-serialised JSON in a document that orjson writes."""
    return orjson.Fragment(body)
