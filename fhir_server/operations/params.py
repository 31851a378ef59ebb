"""Operation input parameters: the query string, plus a Parameters body when invoked by POST.

Only primitive `value[x]` parameters are read from the body (what these operations accept);
each becomes a (name, text) pair like a query parameter, so one parser serves GET and POST.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.interactions.context import FhirRequest

_PRIMITIVE = (
    "valueString", "valueCode", "valueDate", "valueDateTime", "valueInstant", "valueUri",
    "valueInteger", "valuePositiveInt", "valueUnsignedInt", "valueBoolean", "valueId",
    "valueCanonical", "valueUrl", "valueDecimal",
)  # fmt: skip


def operation_params(req: FhirRequest) -> list[tuple[str, str]]:
    params = list(req.params)
    body: Any = req.body
    if body is None:
        return params
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("The body of an operation must be a Parameters resource")
    for p in body.get("parameter", []):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise BadRequest("Each Parameters.parameter needs a name", expression=["parameter"])
        found = [k for k in _PRIMITIVE if k in p]
        if not found:
            raise BadRequest(
                f"Parameter '{p['name']}' must have a primitive value", expression=[p["name"]]
            )
        value = p[found[0]]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        params.append((p["name"], text))
    return params


GENERAL = frozenset({"_format", "_pretty"})  # accepted by every interaction


def check_names(params: list[tuple[str, str]], known: frozenset[str], lenient: bool) -> list[str]:
    """The parameters not in `known` (nor `_format`/`_pretty`): 400 naming them, or with
    `Prefer: handling=lenient` their names, for the caller to ignore."""
    unknown = sorted({k for k, _ in params if k not in known and k not in GENERAL})
    if unknown and not lenient:
        listed = ", ".join(f"'{k}'" for k in unknown)
        raise BadRequest(f"Unknown parameter(s) {listed} (known: {', '.join(sorted(known))})",
                         expression=unknown)  # fmt: skip
    return unknown


def single(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise BadRequest(f"Parameter '{name}' may appear only once", expression=[name])
    return values[0] if values else None


def date_param(params: list[tuple[str, str]], name: str) -> dt.date | None:
    value = single(params, name)
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD), not '{value}'",
                         expression=[name]) from None  # fmt: skip


def bool_param(params: list[tuple[str, str]], name: str) -> bool:
    value = single(params, name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false, not '{value}'", expression=[name])
    return value == "true"
