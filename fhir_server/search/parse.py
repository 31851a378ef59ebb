"""Query parameters -> a validated `SearchQuery`.

Strict by default: an unknown parameter, an unknown modifier, or a malformed value is a 400 that
names the parameter. With `Prefer: handling=lenient`, unknown parameters are skipped and listed in
`ParsedSearch.ignored` (reported back in the Bundle); malformed values of known ones are still
errors, since dropping them would silently widen the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Literal, cast

from fhir_server.errors import BadRequest
from fhir_server.fhir.dates import parse_fhir_datetime_range
from fhir_server.fhir.searchparams import SearchParamDef, SearchParamRegistry
from fhir_server.search import values as v
from fhir_server.search.implied import implied_system
from fhir_server.search.query import (
    ChainCriterion,
    Clause,
    CompositeCriterion,
    Criterion,
    HasCriterion,
    IdCriterion,
    Include,
    LastUpdatedCriterion,
    ListCriterion,
    MissingCriterion,
    SearchQuery,
    SortKey,
    SubsumptionCriterion,
    TextCriterion,
    TokenCriterion,
    ValueSetCriterion,
)

# Parameters that shape the result rather than filter it; the first seven are advertised.
RESULT_PARAMETERS = (
    "_count",
    "_sort",
    "_total",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
)
RESULT_PARAMS = frozenset(
    {*RESULT_PARAMETERS, "_format", "_pretty", "_page", "_contained", "_containedType", "_type"}
)
UNSUPPORTED = frozenset({"_query", "_filter"})
# Result parameters that take one value: repeating them is an error, not "the last one wins".
_SINGLE_VALUED = frozenset(
    {"_count", "_sort", "_total", "_summary", "_elements", "_contained", "_containedType", "_type"}
)
SUMMARY_VALUES = ("true", "text", "data", "count", "false")
_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"text", "not", "missing", "of-type", "in", "not-in", "above", "below"}),
    "reference": frozenset({"identifier", "missing"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"above", "below", "missing"}),
    "composite": frozenset({"missing"}),
}


@dataclass
class ParsedSearch:
    query: SearchQuery
    ignored: list[str] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None


@dataclass
class SearchContext:
    registry: SearchParamRegistry
    tz: tzinfo
    base_url: str
    lenient: bool = False
    resource_types: frozenset[str] = frozenset()


def _param_def(ctx: SearchContext, types: tuple[str, ...], name: str) -> SearchParamDef | None:
    """The definition of `name` valid for every one of `types` (all Resource-level if none)."""
    candidates = types or ("Resource",)
    found: SearchParamDef | None = None
    for t in candidates:
        d = ctx.registry.get(t, name)
        if d is None:
            return None
        found = found or d
    return found


def _criterion(
    ctx: SearchContext, types: tuple[str, ...], key: str, value: str, ignored: list[str]
) -> Clause | None:
    """One `key=value` pair as a Clause (values separated by commas are ORed)."""
    if key.startswith("_has:"):
        return Clause((_has(ctx, types, key, value, ignored),))
    name, _, chain = key.partition(".")
    name, _, modifier_text = name.partition(":")
    modifier = modifier_text or None
    if name in ("_id", "_lastUpdated") and modifier not in (None, "not" if name == "_id" else None):
        raise BadRequest(
            f"Unknown or unsupported modifier ':{modifier}' on parameter '{name}'",
            expression=[f"{name}:{modifier}"],
        )
    if name == "_id":
        ids = tuple(v.unescape(x) for x in v.split_unescaped(value, ","))
        return Clause((IdCriterion(ids, negate=modifier == "not"),))
    if name == "_lastUpdated":
        crits: list[Criterion] = []
        for part in v.split_unescaped(value, ","):
            prefix, rest = v.split_prefix(name, part)
            try:
                low, high = parse_fhir_datetime_range(rest, ctx.tz)
            except ValueError as exc:
                raise BadRequest(
                    f"Invalid _lastUpdated '{part}': {exc}", expression=[name]
                ) from None
            crits.append(LastUpdatedCriterion(prefix, low, high))
        return Clause(tuple(crits))
    if name in ("_text", "_content"):
        field: Literal["narrative", "content"] = "narrative" if name == "_text" else "content"
        parts = [v.unescape(x) for x in v.split_unescaped(value, ",") if x.strip()]
        if not parts:
            raise BadRequest(f"Empty value for '{name}'", expression=[name])
        return Clause(tuple(TextCriterion(field, p) for p in parts))
    if name == "_list":
        return Clause(tuple(ListCriterion(v.unescape(x)) for x in v.split_unescaped(value, ",")))
    if name in UNSUPPORTED:
        raise BadRequest(
            f"Search parameter '{name}' is not supported", code="not-supported", expression=[name]
        )
    d = _param_def(ctx, types, name)
    if d is None or d.type == "special":
        if ctx.lenient:
            ignored.append(key)
            return None
        where = ",".join(types) or "system-level search"
        raise BadRequest(f"Unknown search parameter '{name}' for {where}", expression=[name])
    if chain:
        return Clause(tuple(_chain(ctx, d, modifier, chain, part, ignored) for part in [value]))
    if modifier is not None and modifier not in _MODIFIERS.get(d.type, frozenset()):
        is_type_modifier = d.type == "reference" and modifier in ctx.resource_types
        if not is_type_modifier:
            raise BadRequest(
                f"Unknown or unsupported modifier ':{modifier}' on parameter '{name}'",
                expression=[f"{name}:{modifier}"],
            )
    if modifier == "missing":
        if value not in ("true", "false"):
            raise BadRequest(f"':missing' takes true or false, not '{value}'", expression=[key])
        return Clause((MissingCriterion(name, d.type, value == "true"),))
    parts = v.split_unescaped(value, ",") if d.type != "composite" else value.split(",")
    values = tuple(_value(ctx, d, modifier, p) for p in parts)
    if d.type == "token" and modifier in (None, "not") and types:
        values = tuple(_implied(ctx, types, name, c) for c in values)
    return Clause(values)


def _implied(ctx: SearchContext, types: tuple[str, ...], name: str, c: Criterion) -> Criterion:
    """`S|code` on a `code` element whose binding implies the system S: the code as stored
    (without a system); `S|` there: any value. See search/implied.py."""
    if not isinstance(c, TokenCriterion) or c.system is None or c.any_system:
        return c
    systems = set()
    for t in types:
        d = ctx.registry.get(t, name)
        systems.add(implied_system(t, d.expression or "") if d is not None else None)
    if systems != {c.system}:
        return c
    if c.code is None:
        return MissingCriterion(name, "token", missing=c.negate)
    return TokenCriterion(name, None, c.code, negate=c.negate)


def _value(ctx: SearchContext, d: SearchParamDef, modifier: str | None, text: str) -> Criterion:
    name = d.code
    if text == "":
        raise BadRequest(f"Empty value for parameter '{name}'", expression=[name])
    match d.type:
        case "token":
            if modifier == "of-type":
                parts = v.split_unescaped(text, "|")
                if len(parts) != 3:
                    raise BadRequest(
                        f"':of-type' takes system|code|value, not '{text}'", expression=[name]
                    )
                system, code, ident = (v.unescape(p) for p in parts)
                return TokenCriterion(f"{name}:of-type", system or None, f"{code}|{ident}")
            if modifier in ("in", "not-in"):
                return ValueSetCriterion(name, v.unescape(text), modifier == "not-in")
            if modifier in ("above", "below"):
                token = v.parse_token(name, text, None)
                if token.code is None:
                    raise BadRequest(
                        f"':{modifier}' needs a code", expression=[f"{name}:{modifier}"]
                    )
                direction: Literal["above", "below"] = "above" if modifier == "above" else "below"
                return SubsumptionCriterion(name, token.system, token.code, direction)
            return v.parse_token(name, text, modifier)
        case "string":
            return v.parse_string(name, text, modifier)
        case "date":
            return v.parse_date(name, text, ctx.tz)
        case "number":
            return v.parse_number(name, text)
        case "quantity":
            return v.parse_quantity(name, text)
        case "uri":
            return v.parse_uri(name, text, modifier)
        case "reference":
            if modifier == "identifier":
                return v.parse_token(f"{name}:identifier", text, None)
            return v.parse_reference(name, text, modifier, ctx.base_url, d.targets)
        case "composite":
            return _composite(ctx, d, text)
    raise BadRequest(
        f"Search parameter '{name}' of type {d.type} is not supported",
        code="not-supported",
        expression=[name],
    )


def _composite(ctx: SearchContext, d: SearchParamDef, text: str) -> Criterion:
    parts = v.split_unescaped(text, "$")
    if len(parts) != len(d.components) or len(parts) != 2:
        raise BadRequest(
            f"Composite parameter '{d.code}' takes {len(d.components)} values "
            f"joined by '$', not '{text}'",
            expression=[d.code],
        )
    comps: list[Criterion] = []
    for comp, part in zip(d.components, parts, strict=True):
        sub = SearchParamDef(
            code=d.code,
            base=d.base,
            type=comp.type,
            expression=comp.expression,
            url="",
            description="",
            targets=d.targets,
        )
        comps.append(_value(ctx, sub, None, part))
    return CompositeCriterion(d.code, tuple(comps))


def _chain(
    ctx: SearchContext,
    d: SearchParamDef,
    modifier: str | None,
    chain: str,
    value: str,
    ignored: list[str],
) -> Criterion:
    if d.type != "reference":
        raise BadRequest(
            f"Parameter '{d.code}' is not a reference and cannot be chained", expression=[d.code]
        )
    targets = (modifier,) if modifier else d.targets
    inner_name = chain.split(".", 1)[0].split(":", 1)[0]
    usable = tuple(
        t
        for t in targets
        if ctx.registry.get(t, inner_name) is not None or inner_name in ("_id", "_lastUpdated")
    )
    if not usable:
        raise BadRequest(
            f"Chained parameter '{inner_name}' is not defined for the targets of "
            f"'{d.code}' ({', '.join(targets)})",
            expression=[f"{d.code}.{chain}"],
        )
    inner = _criterion(ctx, usable, chain, value, ignored)
    if inner is None:
        raise BadRequest(f"Unknown chained parameter '{chain}'", expression=[f"{d.code}.{chain}"])
    return ChainCriterion(d.code, usable, (inner,))


def _has(
    ctx: SearchContext, types: tuple[str, ...], key: str, value: str, ignored: list[str]
) -> Criterion:
    parts = key.split(":", 3)
    if len(parts) != 4 or not parts[3]:
        raise BadRequest(
            f"Malformed '{key}': use _has:Type:reference-param:search-param", expression=[key]
        )
    _, source, ref_param, rest = parts
    if source not in ctx.resource_types:
        raise BadRequest(f"Unknown resource type '{source}' in '{key}'", expression=[key])
    ref = ctx.registry.get(source, ref_param)
    if ref is None or ref.type != "reference":
        raise BadRequest(
            f"'{ref_param}' is not a reference parameter of {source}", expression=[key]
        )
    inner = _criterion(ctx, (source,), rest, value, ignored)
    if inner is None:
        raise BadRequest(f"Unknown parameter in '{key}'", expression=[key])
    return HasCriterion(source, ref_param, (inner,))


def _sort(ctx: SearchContext, types: tuple[str, ...], value: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for item in value.split(","):
        desc = item.startswith("-")
        name = item[1:] if desc else item
        if name in ("_id", "_lastUpdated"):
            keys.append(SortKey(name, "special", desc))
            continue
        d = _param_def(ctx, types, name)
        if d is None or d.type in ("composite", "special"):
            raise BadRequest(f"Cannot sort by '{name}'", expression=["_sort"])
        keys.append(SortKey(name, d.type, desc))
    return tuple(keys)


def _include(ctx: SearchContext, types: tuple[str, ...], key: str, value: str) -> list[Include]:
    reverse = key.startswith("_revinclude")
    iterate = key.endswith(":iterate") or key.endswith(":recurse")
    if value == "*":
        if reverse:  # every resource of any type that points at a match
            return [Include("*", "*", None, True, iterate)]
        return [Include(t, "*", None, False, iterate) for t in types]
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise BadRequest(
            f"Malformed {key} '{value}': use Type:param[:targetType]", expression=[key]
        )
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    ref = ctx.registry.get(source, param) if param != "*" else None
    if source not in ctx.resource_types or (
        param != "*" and (ref is None or ref.type != "reference")
    ):
        raise BadRequest(f"Invalid {key} '{value}'", expression=[key])
    if target is not None and target not in ctx.resource_types:
        raise BadRequest(f"Unknown target type in {key} '{value}'", expression=[key])
    return [Include(source, param, target, reverse, iterate)]


def parse_search(
    ctx: SearchContext,
    types: tuple[str, ...],
    params: list[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
) -> ParsedSearch:
    ignored: list[str] = []
    clauses: list[Clause] = []
    sort: tuple[SortKey, ...] = ()
    includes: list[Include] = []
    count = default_count
    total = "none"
    summary: str | None = None
    elements: list[str] | None = None
    seen: set[str] = set()
    for key, value in params:
        base = key.split(":", 1)[0]
        if base in _SINGLE_VALUED:
            if base in seen:  # which one would win is not said anywhere: refuse
                raise BadRequest(
                    f"Result parameter '{base}' is given more than once", expression=[base]
                )
            seen.add(base)
        if base == "_count":
            if not value.isdigit():
                raise BadRequest(
                    f"_count must be a non-negative integer, not '{value}'", expression=["_count"]
                )
            count = min(int(value), max_count)
        elif base == "_sort":
            sort = _sort(ctx, types, value)
        elif base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise BadRequest(
                    f"_total must be none, estimate or accurate, not '{value}'",
                    expression=["_total"],
                )
            total = value
        elif base in ("_include", "_revinclude"):
            includes.extend(_include(ctx, types, key, value))
        elif base == "_summary":
            if value not in SUMMARY_VALUES:
                raise BadRequest(
                    f"_summary must be one of {', '.join(SUMMARY_VALUES)}", expression=["_summary"]
                )
            summary = None if value == "false" else value
        elif base == "_elements":
            elements = [e.strip() for e in value.split(",") if e.strip()]
        elif base == "_contained" or base == "_containedType":
            if value != "false" and base == "_contained":
                raise BadRequest(
                    "Searching contained resources (_contained) is not supported",
                    code="not-supported",
                    expression=["_contained"],
                )
        elif base in RESULT_PARAMS:
            continue
        else:
            clause = _criterion(ctx, types, key, value, ignored)
            if clause is not None:
                clauses.append(clause)
    if summary == "count":
        count, total = 0, "accurate"
    query = SearchQuery(
        resource_types=types,
        clauses=tuple(clauses),
        sort=sort,
        count=count,
        total=cast(Literal["none", "estimate", "accurate"], total),
        includes=tuple(includes),
    )
    return ParsedSearch(query, ignored, summary, elements)
