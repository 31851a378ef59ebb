"""Typed search-index values, extracted from a resource at write time.

This is the contract between extraction (`fhir.extract`) and the storage engines: an engine stores
these rows beside the resource in the same transaction and answers searches from them, never from
resource bodies. Values are already normalised for matching; engines only compare them.

Conventions
- `param` is the search parameter code as used in URLs (`code`, `subject`, `value-quantity`).
- Dates are half-open instants ranges [low, high) in integer microseconds since the Unix epoch (UTC).
  An open end is `DATE_MIN` / `DATE_MAX`. A date without a time zone is read in the configured zone.
- Token rows: a Coding gives (system, code); an Identifier (system, value); a plain code (None, code);
  a boolean (None, "true"/"false"); CodeableConcept.text and Coding.display go in `text` (normalised)
  on their own rows with system and code None, so `:text` can match them.
- Identifier.type is indexed for `:of-type` as a token row with param "<param>:of-type",
  system = type coding system, code = "<type code>|<identifier value>".
- A Reference.identifier is indexed for `:identifier` as a token row with param "<param>:identifier".
- Strings: `norm` is lower-cased, accent-stripped, whitespace-collapsed; `exact` is the original text.
"""

from __future__ import annotations

from dataclasses import dataclass

DATE_MIN = -(2**62)
DATE_MAX = 2**62


@dataclass(frozen=True, slots=True)
class TokenValue:
    param: str
    system: str | None
    code: str | None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class StringValue:
    param: str
    norm: str
    exact: str


@dataclass(frozen=True, slots=True)
class DateValue:
    param: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    param: str
    value: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    param: str
    value: float
    system: str | None
    code: str | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A local reference has type and id; an absolute or unparseable one keeps its url."""

    param: str
    target_type: str | None
    target_id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    param: str
    uri: str


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """One combination of component values (e.g. code + value-quantity of one component)."""

    param: str
    components: tuple[IndexValue, ...]


@dataclass(frozen=True, slots=True)
class FullTextValue:
    """Text for `_text` (param "_text": the narrative) and `_content` (param "_content": all text)."""

    param: str
    text: str


IndexValue = (
    TokenValue
    | StringValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | CompositeValue
    | FullTextValue
)
