"""Index values from one JSON value of a known FHIR type, per search parameter type.

`make_converter(code, param_type, fhir_type, tz)` picks, once at build time, the function that turns
a value of that FHIR type into `IndexValue`s appended to an output list; None means the type gives
that kind of parameter nothing (a SampledData for a quantity, an Age for a date). Choices the FHIR
search page leaves open, taken here on purpose:
- code-typed elements are tokens without a system (their system is implicit in the binding);
- ContactPoint is a token of its value alone; Money is a quantity with system urn:iso:std:iso:4217;
- a Range, for quantity and number parameters, gives its low and its high as two separate values;
- a canonical, uri or Attachment (its url) under a reference parameter is a ReferenceValue url
  (a relative `Type/id` canonical gives type and id, like a Reference);
- a Resource (Bundle.entry[0].resource) under a reference parameter is a reference to its type/id;
- an Extension gives what its value[x] gives (its type read from the JSON key).
Malformed values (wrong JSON types, unparseable dates) are skipped, never raised: validation is
not extraction's job, and one odd element must not make a resource unstorable.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any, Final

from fhir_server.fhir.extract import measures as m
from fhir_server.fhir.extract import tokens as t
from fhir_server.fhir.extract.tokens import Convert, Maker, Out, text_of
from fhir_server.fhir.fhirpath import load_model
from fhir_server.fhir.index_values import ReferenceValue, UriValue

__all__ = ["Convert", "make_converter", "reference_value"]

STRING_TYPES: Final = ("string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid")
NUMBER_TYPES: Final = ("integer", "decimal", "positiveInt", "unsignedInt")
QUANTITY_TYPES: Final = (
    "Quantity",
    "Age",
    "Duration",
    "Distance",
    "Count",
    "SimpleQuantity",
    "MoneyQuantity",
)
_LOCAL_REF: Final = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")


@functools.lru_cache(maxsize=65536)  # the same subject/encounter recurs in many resources
def reference_value(p: str, ref: str) -> ReferenceValue:
    """`Type/id[/_history/v]` of a known type -> type and id; anything else (`#x`, URLs) -> url."""
    match = _LOCAL_REF.fullmatch(ref)
    if match is not None and match.group(1) in load_model().resource_types:
        return ReferenceValue(p, match.group(1), match.group(2))
    return ReferenceValue(p, None, None, ref)


def _reference(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    by_identifier = p + ":identifier"

    def run(v: Any, out: Out) -> None:
        if v.__class__ is not dict:
            return
        if ref := text_of(v.get("reference")):
            out.append(reference_value(p, ref))
        if not primary and (ident := v.get("identifier")) is not None:
            t.identifier_rows(by_identifier, None, ident, out)

    return run


def _url_reference(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    # Canonicals are meant to be absolute, but a relative `Questionnaire/q1` is read as local.
    return lambda v, out: out.append(reference_value(p, v)) if text_of(v) else None


def _attachment_reference(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        if v.__class__ is dict and (url := text_of(v.get("url"))):
            out.append(ReferenceValue(p, None, None, url))

    return run


def _resource_reference(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        if (
            v.__class__ is dict
            and (kind := text_of(v.get("resourceType")))
            and (rid := text_of(v.get("id")))
        ):
            out.append(ReferenceValue(p, kind, rid))

    return run


def _uri(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    return lambda v, out: out.append(UriValue(p, v)) if text_of(v) else None


def _table() -> dict[tuple[str, str], Maker]:
    table: dict[tuple[str, str], Maker] = {
        ("token", "Coding"): t.coding,
        ("token", "CodeableConcept"): t.codeable_concept,
        ("token", "Identifier"): t.identifier,
        ("token", "ContactPoint"): t.contact_point,
        ("token", "boolean"): t.boolean,
        ("string", "HumanName"): t.human_name,
        ("string", "Address"): t.address,
        ("date", "Period"): m.period,
        ("date", "Timing"): m.timing,
        ("number", "Range"): m.number_range,
        ("quantity", "Range"): m.quantity_range,
        ("quantity", "Money"): m.money,
        ("reference", "Reference"): _reference,
        ("reference", "Attachment"): _attachment_reference,
    }
    for name in STRING_TYPES:
        table[("token", name)] = t.plain_token
        table[("string", name)] = t.plain_string
        table[("uri", name)] = _uri
        table[("reference", name)] = _url_reference
    for name in NUMBER_TYPES:
        table[("token", name)] = t.number_token
        table[("number", name)] = m.number
    for name in QUANTITY_TYPES:
        table[("quantity", name)] = m.quantity
    for name in ("date", "dateTime", "instant"):
        table[("date", name)] = m.instant
    for name in (*load_model().resource_types, "Resource", "DomainResource"):
        table[("reference", name)] = _resource_reference
    return table


_MAKERS: dict[tuple[str, str], Maker] = {}


def make_converter(
    code: str, param_type: str, fhir_type: str, tz: dt.tzinfo, *, primary: bool = False
) -> Convert | None:
    """The converter of `fhir_type` values for a parameter, or None if that type gives it nothing.

    `primary` leaves out the auxiliary rows (`:text`, `:of-type`, `:identifier`): composite
    components pair only their main values.
    """
    if not _MAKERS:
        _MAKERS.update(_table())
    if fhir_type == "Extension":
        return _extension(code, param_type, tz, primary) if param_type in _PARAM_TYPES else None
    maker = _MAKERS.get((param_type, fhir_type))
    return maker(code, tz, primary) if maker is not None else None


_PARAM_TYPES: Final = frozenset(
    {"token", "string", "date", "number", "quantity", "reference", "uri"}
)


def _extension(code: str, param_type: str, tz: dt.tzinfo, primary: bool) -> Convert:
    """Extension values are typed by their `value[x]` key, so pick the converter at run time."""
    model = load_model()
    cache: dict[str, Convert | None] = {}

    def run(v: Any, out: Out) -> None:
        if v.__class__ is not dict:
            return
        for key, value in v.items():
            if key.startswith("value") and len(key) > 5:
                if key not in cache:
                    found = model.choice_type("Extension", key)
                    cache[key] = (
                        make_converter(code, param_type, found[1], tz, primary=primary)
                        if found
                        else None
                    )
                if (convert := cache[key]) is not None:
                    convert(value, out)

    return run
