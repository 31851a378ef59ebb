"""`_summary` and `_elements`: the only place a stored body is re-parsed on the way out.

A subset carries the SUBSETTED tag (http://terminology.hl7.org/CodeSystem/v3-ObservationValue),
as the R4 search page requires.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.fhir import jsonio
from fhir_server.fhir.resource_types import resource_types

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = ("resourceType", "id", "meta")


def _tagged(out: dict[str, Any]) -> dict[str, Any]:
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def subset(
    resource: dict[str, Any], summary: str | None, elements: list[str] | None
) -> dict[str, Any]:
    info = resource_types().get(str(resource.get("resourceType")))
    required = info.required if info else frozenset()
    if summary in ("true", "text", "data"):
        if summary == "data":
            return _tagged({k: v for k, v in resource.items() if k != "text"})
        if summary == "text":
            keep = {*_ALWAYS, "text", *required}
        else:
            keep = {*_ALWAYS, *(info.summary if info else ()), *required}
        return _tagged({k: v for k, v in resource.items() if k in keep})
    if elements is not None:
        keep = {*_ALWAYS, *required, *elements}
        return _tagged({k: v for k, v in resource.items() if k in keep})
    return resource


def subset_body(body: bytes, summary: str | None, elements_param: str | None) -> bytes:
    if summary is None and elements_param is None:
        return body
    if summary is not None and summary not in ("true", "text", "data", "false"):
        raise BadRequest(f"_summary must be true, text, data or false, not '{summary}'")
    if summary == "false":
        summary = None
        if elements_param is None:
            return body
    elements = [e.strip() for e in elements_param.split(",")] if elements_param else None
    return jsonio.dumps(subset(jsonio.loads_own(body), summary, elements))
