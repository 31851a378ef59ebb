"""Kick-off parameters -> `ExportParams`. Pure: no I/O.

Parameters come from the query string (GET or POST) and from a `Parameters` body (POST). A value
the server does not support (an unknown parameter, an output format, an `includeAssociatedData`
code, a type outside the Patient compartment at patient level) is a 400 naming it, unless the
client sent `Prefer: handling=lenient`: then it is ignored and reported as a warning in the
manifest's `error` OperationOutcome file. A `_typeFilter` query that uses a search parameter or
modifier the server does not support is such a value: under lenient handling that whole query is
not applied (see `parse_type_filter`). Malformed values of supported parameters (`_since`, a
`_typeFilter` query that does not parse) are always a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Literal
from urllib.parse import parse_qsl

from fhir_server.errors import BadRequest
from fhir_server.fhir.compartments import compartment_resource_types
from fhir_server.fhir.dates import parse_fhir_datetime_range
from fhir_server.search.parse import SearchContext, parse_search

Level = Literal["system", "patient", "group"]
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
# includeAssociatedData: the Provenance resources whose target is an exported resource.
RELEVANT_PROVENANCE = "RelevantProvenanceResources"
ASSOCIATED = frozenset({RELEVANT_PROVENANCE})
# Parameters with no effect on what is exported.
_IGNORED = frozenset({"_format", "_pretty"})
_KNOWN = frozenset(
    {
        "_outputFormat",
        "_since",
        "_until",
        "_type",
        "_elements",
        "patient",
        "includeAssociatedData",
        "_typeFilter",
    }
)
_ELEMENT_RE = re.compile(r"^(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*(?:\[x\])?)$")
# A `_typeFilter` value may hold several queries separated by commas; a new one starts with a
# resource type and '?'. Commas inside a query (value lists) stay with it.
_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]+\?)")
_RESULT_PARAMS = frozenset(
    {"_count", "_sort", "_total", "_include", "_revinclude", "_summary", "_elements", "_page"}
)


@dataclass(frozen=True)
class TypeFilter:
    """One `_typeFilter` query: `rtype?query` (criteria of one type, ANDed)."""

    rtype: str
    query: str


@dataclass(frozen=True)
class ExportParams:
    output_format: str = NDJSON
    since: int | None = None  # µs; resources with lastUpdated after it
    until: int | None = None  # µs; resources with lastUpdated before it
    types: tuple[str, ...] = ()  # empty: every type the level allows
    elements: tuple[str, ...] = ()  # "elem" or "Type.elem"
    patients: tuple[str, ...] = ()  # Patient ids (the `patient` parameter)
    type_filters: tuple[TypeFilter, ...] = ()
    associated: tuple[str, ...] = ()  # includeAssociatedData codes
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "output_format": self.output_format,
            "since": self.since,
            "until": self.until,
            "types": list(self.types),
            "elements": list(self.elements),
            "patients": list(self.patients),
            "type_filters": [[f.rtype, f.query] for f in self.type_filters],
            "associated": list(self.associated),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ExportParams:
        return cls(
            output_format=doc["output_format"],
            since=doc.get("since"),
            until=doc.get("until"),
            types=tuple(doc.get("types", ())),
            elements=tuple(doc.get("elements", ())),
            patients=tuple(doc.get("patients", ())),
            type_filters=tuple(TypeFilter(t, q) for t, q in doc.get("type_filters", ())),
            associated=tuple(doc.get("associated", ())),
            warnings=tuple(doc.get("warnings", ())),
        )

    def elements_for(self, rtype: str) -> list[str] | None:
        """The `_elements` that apply to `rtype`, or None to export whole resources."""
        if not self.elements:
            return None
        out: list[str] = []
        for e in self.elements:
            t, _, name = e.rpartition(".")
            if not t or t == rtype:
                out.append(name)
        return out or None


def _parameter_value(p: dict[str, Any]) -> str:
    for key, value in p.items():
        if key.startswith("value"):
            if isinstance(value, dict):  # valueReference
                return str(value.get("reference", ""))
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)
    raise BadRequest(f"Parameter '{p.get('name')}' has no value", expression=["Parameters"])


def collect(params: list[tuple[str, str]], body: Any) -> list[tuple[str, str]]:
    """The kick-off's (name, value) pairs: query string first, then a `Parameters` body."""
    pairs = list(params)
    if body is None:
        return pairs
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("A POST kick-off takes a Parameters resource as its body")
    for p in body.get("parameter") or []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise BadRequest("Each Parameters.parameter needs a name", expression=["Parameters"])
        pairs.append((p["name"], _parameter_value(p)))
    return pairs


def _instant(name: str, value: str, tz: tzinfo) -> int:
    try:
        low, _ = parse_fhir_datetime_range(value, tz)
    except ValueError:
        raise BadRequest(
            f"{name} must be a FHIR instant such as 2024-01-31T12:00:00Z, not '{value}'",
            expression=[name],
        ) from None
    return low


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


class _Collector:
    def __init__(self, lenient: bool) -> None:
        self.lenient = lenient
        self.warnings: list[str] = []

    def unsupported(self, text: str, expression: str) -> None:
        if not self.lenient:
            raise BadRequest(text, code="not-supported", expression=[expression])
        self.warnings.append(f"{text} (ignored: Prefer: handling=lenient)")


def parse_kickoff(
    level: Level,
    pairs: list[tuple[str, str]],
    *,
    lenient: bool,
    search: SearchContext,
) -> ExportParams:
    """Validate the kick-off parameters of an export at `level`."""
    out = _Collector(lenient)
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        if name in _IGNORED:
            continue
        if name not in _KNOWN:
            out.unsupported(f"Unsupported export parameter '{name}'", name)
            continue
        values.setdefault(name, []).append(value)

    output_format = NDJSON
    for fmt in values.get("_outputFormat", []):
        if fmt.strip().replace(" ", "+") in OUTPUT_FORMATS:  # an unencoded `+` reads as a space
            output_format = NDJSON
        else:
            out.unsupported(
                f"Unsupported _outputFormat '{fmt}': use application/fhir+ndjson", "_outputFormat"
            )
    since = until = None
    for name in ("_since", "_until"):
        got = values.get(name, [])
        if len(got) > 1:
            raise BadRequest(f"{name} may be given once", expression=[name])
        if got:
            instant = _instant(name, got[0], search.tz)
            since, until = (instant, until) if name == "_since" else (since, instant)

    allowed = search.resource_types
    if level != "system":
        allowed = frozenset(compartment_resource_types("Patient")) & search.resource_types
    types: list[str] = []
    for t in _split(values.get("_type", [])):
        if t in types:
            continue
        if t not in search.resource_types:
            out.unsupported(f"Unknown resource type '{t}' in _type", "_type")
        elif t not in allowed:
            # The IG: types outside the Patient compartment are left out of patient-level exports.
            out.warnings.append(f"{t} is not in the Patient compartment: not exported")
        else:
            types.append(t)
    if values.get("_type") and not types:
        raise BadRequest("None of the types in _type can be exported here", expression=["_type"])

    elements: list[str] = []
    for e in _split(values.get("_elements", [])):
        m = _ELEMENT_RE.match(e)
        if m is None or (m.group(1) and m.group(1) not in search.resource_types):
            raise BadRequest(
                f"Invalid _elements entry '{e}': use element or Type.element",
                expression=["_elements"],
            )
        elements.append(e)

    patients: list[str] = []
    for ref in _split(values.get("patient", [])):
        pid = ref.removeprefix("Patient/")
        if "/" in pid or not pid:
            raise BadRequest(f"patient must be a Patient reference, not '{ref}'",
                             expression=["patient"])  # fmt: skip
        if pid not in patients:
            patients.append(pid)
    if patients and level == "system":
        out.unsupported("The patient parameter applies to Patient and Group exports", "patient")
        patients = []

    associated: list[str] = []
    for code in _split(values.get("includeAssociatedData", [])):
        if code in ASSOCIATED:
            associated.append(code)
        else:
            out.unsupported(
                f"includeAssociatedData '{code}' is not supported by this server "
                f"(supported: {', '.join(sorted(ASSOCIATED))})",
                "includeAssociatedData",
            )

    filters: list[TypeFilter] = []
    for value in values.get("_typeFilter", []):
        for text in _FILTER_SPLIT.split(value):
            parsed = parse_type_filter(text, search, out)
            if parsed is not None:
                filters.append(parsed)
    return ExportParams(
        output_format=output_format,
        since=since,
        until=until,
        types=tuple(types),
        elements=tuple(elements),
        patients=tuple(patients),
        type_filters=tuple(filters),
        associated=tuple(dict.fromkeys(associated)),
        warnings=tuple(out.warnings),
    )


def filter_pairs(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequest(f"Malformed _typeFilter query '{query}'",
                         expression=["_typeFilter"]) from None  # fmt: skip


def parse_type_filter(
    text: str, search: SearchContext, out: _Collector | None = None
) -> TypeFilter | None:
    """`Type?criteria`, checked with the search parser. A malformed query (no `Type?`, a
    result parameter, a bad value) is a 400. A query using a search parameter or modifier this
    server does not support is a 400 (`not-supported`) too, unless `out` is lenient: then the
    whole query is not applied (None) and a warning names it. That is the IG's lenient handling
    (the server MAY ignore the unsupported value; clients SHOULD be robust to servers that ignore
    `_typeFilter`): the query's other criteria are not applied on their own, and the type is
    still exported through its other `_typeFilter` queries, or unfiltered when it has none."""
    rtype, sep, query = text.strip().partition("?")
    if not sep or rtype not in search.resource_types or not query:
        raise BadRequest(
            f"Invalid _typeFilter '{text}': use ResourceType?search-parameters",
            expression=["_typeFilter"],
        )
    pairs = filter_pairs(query)
    shaping = [k for k, _ in pairs if k.split(":", 1)[0] in _RESULT_PARAMS]
    if shaping:
        raise BadRequest(
            f"_typeFilter takes search criteria only, not {', '.join(shaping)}",
            expression=["_typeFilter"],
        )
    lenient = SearchContext(search.registry, search.tz, search.base_url, True,
                            search.resource_types)  # fmt: skip
    unsupported: list[str] = []
    try:
        unsupported = parse_search(lenient, (rtype,), pairs, default_count=1, max_count=1).ignored
    except BadRequest as err:
        if err.code != "not-supported":
            raise BadRequest(f"Invalid _typeFilter '{text}': {err.diagnostics}",
                             expression=["_typeFilter"]) from None  # fmt: skip
        unsupported = [err.diagnostics]
    if unsupported:
        collector = out or _Collector(lenient=False)
        collector.unsupported(
            f"_typeFilter '{text}' uses what this server does not support "
            f"({', '.join(unsupported)}): that query is not applied",
            "_typeFilter",
        )
        return None
    return TypeFilter(rtype, query)
