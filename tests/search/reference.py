"""A reference evaluator for FHIR R4 search: the oracle of the generated and grid tests.

It is deliberately plain and shares nothing with the server's extraction or query code: each
search parameter's FHIRPath expression (from the R4 definitions) is evaluated with `fhirpathpy`
on each resource, and the values found are matched with the rules of the R4 search page
(https://hl7.org/fhir/R4/search.html), read literally:

* a query is a list of `(key, value)` pairs; every pair must match (repeated parameter = AND),
  and a pair matches when any of its comma-separated values matches (comma = OR);
* token: `code`, `system|code`, `|code` (no system), `system|` (any code); `:not` (no value
  matches, resources without a value included), `:text` (string match on CodeableConcept.text,
  Coding.display, Identifier.type.text), `:of-type` (Identifier `type-system|type-code|value`).
  A `code` or `boolean` element has no system of its own here (the tests query it by code);
* string: case- and accent-insensitive starts-with on every string part of the element
  (HumanName: family, given, prefix, suffix, text); `:exact` (whole string, case and accents
  count); `:contains` (case- and accent-insensitive substring);
* date: the stored value and the search value are both ranges ([low, high), from their
  precision; a Period from its start's low to its end's high, open where absent); a value without
  a time zone is read in UTC (the server's configured zone in the tests). Prefixes, from the
  table's "range" column:
    eq  the search range fully contains the stored range
    ne  not eq
    gt  the range above the search range overlaps the stored range (stored high > search high)
    lt  the range below the search range overlaps the stored range (stored low < search low)
    ge  gt or eq
    le  lt or eq
    sa  no overlap, and the stored range lies above the search range (stored low >= search high)
    eb  no overlap, and the stored range lies below the search range (stored high <= search low)
  (`ap` is left to the implementation by the spec, so it is not evaluated here);
* number and quantity: stored values are points; the search value has the implicit precision of
  its digits (`100` is [99.5, 100.5), `100.0` is [99.95, 100.05)), which eq and ne use; gt, lt,
  ge and le compare with the exact value ("gt100: greater than exactly 100"); sa and eb have no
  example in the number section, so the range column applies: sa = at or above the range's
  high, eb = below the range's low. Quantity units: `n|system|code` needs that system and code;
  `n||unit` matches the code or the human unit; `n` alone matches any unit;
* reference: `id` (any target type), `Type/id`, `param:Type=id`;
* chains `ref[:Type].param=` (any depth): some resource the reference points at matches;
  `_has:Type:ref:param=` (nested too): some `Type` resource whose `ref` points here matches;
* `:missing=true` matches resources where the expression finds nothing, `false` the others.

Parameter definitions come from `fhir_server.fhir.searchparams` (the R4 definitions table): only
their codes, types and FHIRPath expressions are used, never the server's evaluation of them.
`:not` with several comma-separated values is read as "none of them" (the tests use one value).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server.fhir.searchparams import SearchParamRegistry

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
Value = tuple[str, Any]  # (FHIR type name, JSON data) of one value an expression found
Range = tuple[float, float]  # [low, high) in microseconds since the epoch; ±inf when open

# --- FHIRPath ----------------------------------------------------------------------------------


def _resolve(inputs: list[Any]) -> list[Any]:
    """`resolve()` for the expressions: a reference `Type/id` becomes an empty `Type` resource,
    which is all that `where(resolve() is Patient)` needs."""
    out = []
    for ref in inputs:
        text = ref.get("reference") if isinstance(ref, dict) else None
        parts = text.split("/") if isinstance(text, str) else []
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            out.append(ResourceNode.create_node({"resourceType": parts[-2]}))
    return out


_OPTIONS = {
    "returnRawData": True,  # keeps each node's FHIR type (node.path), e.g. "Period", "code"
    "userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}},
}


def _union_branches(expression: str) -> list[str]:
    """The operands of a top-level `|`: fhirpathpy's union drops the FHIR type of its nodes, so
    each operand is evaluated on its own (matching only asks whether any value matches)."""
    branches, depth, start = [], 0, 0
    for i, ch in enumerate(expression):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            branches.append(expression[start:i].strip())
            start = i + 1
    return [*branches, expression[start:].strip()]


@functools.cache
def _compiled(expression: str) -> list[Callable[..., list[Any]]]:
    # fhirpathpy 2.2.4 raises on `(X as T)` over several items; `X.ofType(T)` means the same here.
    expression = re.sub(r"\(([^()]+?) as (\w+)\)", r"\1.ofType(\2)", expression)
    return [
        fhirpathpy.compile(branch, model=models["r4"], options=_OPTIONS)
        for branch in _union_branches(expression)
    ]


def values_of(resource: dict[str, Any], expression: str) -> list[Value]:
    """The (type, data) values that `expression` finds on `resource`."""
    return _values_of(json.dumps(resource, sort_keys=True), expression)


@functools.lru_cache(maxsize=100_000)
def _values_of(resource_json: str, expression: str) -> list[Value]:
    # Cached by content: the tests ask many queries of the same resources.
    out = []
    for compiled in _compiled(expression):
        found = compiled(json.loads(resource_json), {})  # (fhirpathpy annotates its input)
        out += [(node.path, node.data) for node in found if isinstance(node, ResourceNode)]
    return out


# --- text and escaping -------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Case- and accent-insensitive form: NFKD without combining marks, case-folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not escaped with a backslash (escapes are kept)."""
    parts, buf, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            buf += text[i : i + 2]
            i += 2
        elif text[i] == sep:
            parts.append(buf)
            buf, i = "", i + 1
        else:
            buf, i = buf + text[i], i + 1
    return [*parts, buf]


def unescape(text: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", text)


def split_prefix(text: str) -> tuple[str, str]:
    if text[:2] in PREFIXES and text[2:3].isdigit():
        return text[:2], text[2:]
    return "eq", text


# --- token -------------------------------------------------------------------------------------


def codings(value: Value) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a token value."""
    kind, data = value
    if kind == "CodeableConcept":
        return [(c.get("system"), c.get("code")) for c in data.get("coding", []) if "code" in c]
    if kind == "Coding":
        return [(data.get("system"), data["code"])] if "code" in data else []
    if kind == "Identifier":
        return [(data.get("system"), data["value"])] if "value" in data else []
    if kind == "boolean":
        return [(None, "true" if data else "false")]
    return [(None, str(data))]  # code, string, uri, id: no system of their own


def token_texts(value: Value) -> list[str]:
    kind, data = value
    if kind == "CodeableConcept":
        return [data.get("text", "")] + [c.get("display", "") for c in data.get("coding", [])]
    if kind == "Coding":
        return [data.get("display", "")]
    if kind == "Identifier":
        return [data.get("type", {}).get("text", "")]
    return []


def token_matches(value: Value, query: str) -> bool:
    parts = [unescape(p) for p in split_unescaped(query, "|")]
    if len(parts) == 1:
        return any(code == parts[0] for _, code in codings(value))
    system, code = parts
    for stored_system, stored_code in codings(value):
        if system == "" and stored_system is not None:
            continue
        if system != "" and stored_system != system:
            continue
        if code == "" or stored_code == code:
            return True
    return False


def of_type_matches(value: Value, query: str) -> bool:
    kind, data = value
    system, code, ident = (unescape(p) for p in split_unescaped(query, "|"))
    if kind != "Identifier" or data.get("value") != ident:
        return False
    return any(
        c.get("system") == system and c.get("code") == code
        for c in data.get("type", {}).get("coding", [])
    )


# --- string ------------------------------------------------------------------------------------

_STRING_PARTS = {
    "HumanName": ("family", "given", "prefix", "suffix", "text"),
    "Address": ("line", "city", "district", "state", "postalCode", "country", "text"),
}


def strings(value: Value) -> list[str]:
    kind, data = value
    if kind not in _STRING_PARTS:
        return [data] if isinstance(data, str) else []
    out: list[str] = []
    for name in _STRING_PARTS[kind]:
        part = data.get(name)
        out.extend(part if isinstance(part, list) else [part] if part is not None else [])
    return out


def string_matches(value: Value, query: str, modifier: str | None) -> bool:
    for stored in strings(value):
        if modifier == "exact" and stored == query:
            return True
        if modifier == "contains" and normalize(query) in normalize(stored):
            return True
        if modifier is None and normalize(stored).startswith(normalize(query)):
            return True
    return False


# --- date --------------------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
INF = float("inf")


def _us(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _US


def date_range(text: str) -> Range:
    """[low, high) of a date, dateTime or instant, by its precision; UTC if it has no zone."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a FHIR date: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    if month is None:
        return _us(dt.datetime(int(year), 1, 1, tzinfo=dt.UTC)), _us(
            dt.datetime(int(year) + 1, 1, 1, tzinfo=dt.UTC)
        )
    if day is None:
        start = dt.datetime(int(year), int(month), 1, tzinfo=dt.UTC)
        nxt = dt.datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1, tzinfo=dt.UTC)
        return _us(start), _us(nxt)
    if hour is None:
        start = dt.datetime(int(year), int(month), int(day), tzinfo=dt.UTC)
        return _us(start), _us(start + dt.timedelta(days=1))
    tz = dt.UTC
    if zone not in (None, "Z"):
        sign = -1 if zone[0] == "-" else 1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    start = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
    )
    if fraction:
        width = dt.timedelta(microseconds=10 ** (6 - len(fraction)))
    elif second is not None:
        width = dt.timedelta(seconds=1)
    else:
        width = dt.timedelta(minutes=1)
    return _us(start), _us(start + width)


def stored_range(value: Value) -> Range | None:
    kind, data = value
    if kind == "Period":
        if "start" not in data and "end" not in data:
            return None
        low = date_range(data["start"])[0] if "start" in data else -INF
        high = date_range(data["end"])[1] if "end" in data else INF
        return low, high
    if kind in ("date", "dateTime", "instant"):
        return date_range(data)
    return None  # Timing and others do not occur in the generated data


def ranges_match(prefix: str, stored: Range, search: Range) -> bool:
    low, high = stored
    s_low, s_high = search
    contained = s_low <= low and high <= s_high
    match prefix:
        case "eq":
            return contained
        case "ne":
            return not contained
        case "gt":
            return high > s_high
        case "lt":
            return low < s_low
        case "ge":
            return high > s_high or contained
        case "le":
            return low < s_low or contained
        case "sa":
            return low >= s_high
        case "eb":
            return high <= s_low
    raise ValueError(f"unsupported prefix {prefix}")


def date_matches(value: Value, query: str) -> bool:
    stored = stored_range(value)
    if stored is None:
        return False
    prefix, text = split_prefix(query)
    return ranges_match(prefix, stored, date_range(text))


# --- number and quantity -----------------------------------------------------------------------


def number_matches(stored: Decimal, prefix: str, text: str) -> bool:
    target = Decimal(text)
    exponent = target.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)  # half a unit of the last digit given
    low, high = target - half, target + half
    match prefix:
        case "eq":
            return low <= stored < high
        case "ne":
            return not low <= stored < high
        case "gt":
            return stored > target
        case "lt":
            return stored < target
        case "ge":
            return stored >= target
        case "le":
            return stored <= target
        case "sa":
            return stored >= high
        case "eb":
            return stored < low
    raise ValueError(f"unsupported prefix {prefix}")


def quantity_matches(value: Value, query: str) -> bool:
    kind, data = value
    if kind not in ("Quantity", "Duration", "Age", "Count", "Distance") or "value" not in data:
        return False
    parts = [unescape(p) for p in split_unescaped(query, "|")]
    prefix, number = split_prefix(parts[0])
    if len(parts) == 3:
        system, code = parts[1], parts[2]
        if system and (data.get("system") != system or data.get("code") != code):
            return False
        if not system and code and code not in (data.get("code"), data.get("unit")):
            return False
    return number_matches(Decimal(str(data["value"])), prefix, number)


# --- reference ---------------------------------------------------------------------------------


def reference_matches(value: Value, query: str, type_modifier: str | None) -> bool:
    kind, data = value
    text = data.get("reference") if kind == "Reference" else None
    if not isinstance(text, str):
        return False
    parts = text.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return False
    stored_type, stored_id = parts[-2], parts[-1]
    wanted_type, _, wanted_id = query.rpartition("/")
    wanted_type = wanted_type.rsplit("/", 1)[-1] or type_modifier
    return stored_id == wanted_id and wanted_type in (None, stored_type)


# --- the search --------------------------------------------------------------------------------


def value_matches(ptype: str, modifier: str | None, value: Value, query: str) -> bool:
    match ptype, modifier:
        case "token", None:
            return token_matches(value, query)
        case "token", "text":
            query = normalize(unescape(query))
            return any(normalize(t).startswith(query) for t in token_texts(value))
        case "token", "of-type":
            return of_type_matches(value, query)
        case "string", None | "exact" | "contains":
            return string_matches(value, unescape(query), modifier)
        case "date", None:
            return date_matches(value, query)
        case "quantity", None:
            return quantity_matches(value, query)
        case "reference", _ if modifier is None or modifier[:1].isupper():  # :Type
            return reference_matches(value, unescape(query), modifier)
    raise ValueError(f"the reference evaluator does not evaluate {ptype} :{modifier}")


def param_matches(
    registry: SearchParamRegistry, resource: dict[str, Any], key: str, text: str
) -> bool:
    """Whether `resource` matches one `key=text` pair of a query."""
    name, _, modifier = key.partition(":")
    definition = registry.get(resource["resourceType"], name)
    if definition is None or not definition.expression:
        raise ValueError(f"unknown parameter {name} for {resource['resourceType']}")
    found = values_of(resource, definition.expression)
    if modifier == "missing":
        assert text in ("true", "false"), text
        return (not found) == (text == "true")
    alternatives = split_unescaped(text, ",")
    if modifier == "not":  # no value matches (any alternative): resources without one included
        return not any(
            value_matches(definition.type, None, value, alt)
            for alt in alternatives
            for value in found
        )
    return any(
        value_matches(definition.type, modifier or None, value, alt)
        for alt in alternatives
        for value in found
    )


def _points_to(value: Value, resource: dict[str, Any]) -> bool:
    return reference_matches(value, f"{resource['resourceType']}/{resource['id']}", None)


def _linked_matches(
    registry: SearchParamRegistry,
    world: list[dict[str, Any]],
    resource: dict[str, Any],
    key: str,
    text: str,
) -> bool:
    """One pair, with reverse chaining (`_has:Type:ref:key`, nested) and chains
    (`ref[:Type].key`, any depth) evaluated over `world`: R4 search 3.1.1.6 and 3.1.1.7."""
    if key.startswith("_has:"):
        _, source, ref_param, rest = key.split(":", 3)
        ref_def = registry.get(source, ref_param)
        assert ref_def is not None and ref_def.expression, key
        expression = ref_def.expression
        return any(
            other["resourceType"] == source
            and any(_points_to(v, resource) for v in values_of(other, expression))
            and _linked_matches(registry, world, other, rest, text)
            for other in world
        )
    head, dot, rest = key.partition(".")
    if not dot:
        return param_matches(registry, resource, key, text)
    name, _, type_modifier = head.partition(":")
    ref_def = registry.get(resource["resourceType"], name)
    assert ref_def is not None and ref_def.expression, key
    refs = values_of(resource, ref_def.expression)
    return any(
        other["resourceType"] in (ref_def.targets if not type_modifier else (type_modifier,))
        and any(_points_to(v, other) for v in refs)
        and _linked_matches(registry, world, other, rest, text)
        for other in world
    )


def matches(
    registry: SearchParamRegistry,
    resource: dict[str, Any],
    params: Iterable[tuple[str, str]],
    world: list[dict[str, Any]] | None = None,
) -> bool:
    return all(
        _linked_matches(registry, world or [resource], resource, key, text) for key, text in params
    )


def search(
    registry: SearchParamRegistry,
    resources: Iterable[dict[str, Any]],
    resource_type: str,
    params: Iterable[tuple[str, str]],
) -> set[str]:
    """The ids of the resources of `resource_type` that match every `(key, value)` of `params`."""
    params = list(params)
    world = list(resources)
    return {
        r["id"]
        for r in world
        if r["resourceType"] == resource_type and matches(registry, r, params, world)
    }
