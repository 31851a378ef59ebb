"""Paired index values: a resource's reference to its patient, subject or device, combined with its
codes, categories and clinical date.

Why: the searches an RPM dashboard or an EHR sync sends most are "this patient's (or device's)
readings of this code, latest first" and "in this date window". With one index per parameter the
store must take every reading of the patient (thousands, growing daily) and test each for the code
and the date. A pair value keys the reading by (reference, code, date) at once, so those searches
read only the rows they return. Engines store pairs as one more index; this module decides, with
no I/O, which pairs a resource has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fhir_server.fhir.index_values import DateValue, IndexValue, ReferenceValue, TokenValue

# The reference parameters a pair starts from (those searches name one patient or device).
PAIRED_REFERENCES = frozenset({"patient", "subject", "device"})
# The token parameters paired with them, and the one date parameter.
PAIRED_TOKENS = frozenset({"code", "category"})
PAIRED_DATE = "date"


@dataclass(frozen=True, slots=True)
class PairValue:
    """One (reference, token or date) pair. `param` is the token parameter, or PAIRED_DATE for a
    date-only pair. `low`/`high` is one value of the resource's date parameter (None when it has
    none); `multi_date` says the resource has several, so a search combining several date
    conditions cannot rely on one pair satisfying them all."""

    ref_param: str
    target_type: str | None
    target_id: str
    param: str
    system: str | None
    code: str | None
    low: int | None
    high: int | None
    multi_date: bool


def pair_values(values: Iterable[IndexValue]) -> list[PairValue]:
    refs: list[ReferenceValue] = []
    tokens: list[TokenValue] = []
    dates: list[DateValue] = []
    for v in values:
        if isinstance(v, ReferenceValue):
            if v.param in PAIRED_REFERENCES and v.target_id is not None:
                refs.append(v)
        elif isinstance(v, TokenValue):
            if v.param in PAIRED_TOKENS and v.code is not None:
                tokens.append(v)
        elif isinstance(v, DateValue) and v.param == PAIRED_DATE:
            dates.append(v)
    if not refs or not (tokens or dates):
        return []
    multi = len(dates) > 1
    spans: list[tuple[int | None, int | None]] = [(d.low, d.high) for d in dates] or [(None, None)]
    out: list[PairValue] = []
    for r in refs:
        assert r.target_id is not None
        for t in tokens:
            for low, high in spans:
                out.append(
                    PairValue(
                        r.param,
                        r.target_type,
                        r.target_id,
                        t.param,
                        t.system,
                        t.code,
                        low,
                        high,
                        multi,
                    )
                )
        for d in dates:
            out.append(
                PairValue(
                    r.param,
                    r.target_type,
                    r.target_id,
                    PAIRED_DATE,
                    None,
                    None,
                    d.low,
                    d.high,
                    multi,
                )
            )
    return out
