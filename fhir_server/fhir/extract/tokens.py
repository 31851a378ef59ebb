"""Converters for token and string parameters (see `convert` for the shared signature).

Each maker takes (param code, zone, primary) and returns `run(value, out)`. `primary` drops the
auxiliary rows (`:text` display/text rows, `:of-type` rows), which composite components do not use.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, Final

from fhir_server.fhir.index_values import IndexValue, StringValue, TokenValue
from fhir_server.fhir.text import normalize_string

Out = list[IndexValue]
Convert = Callable[[Any, Out], None]
Maker = Callable[[str, dt.tzinfo, bool], Convert]

NAME_PARTS: Final = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS: Final = ("line", "city", "district", "state", "postalCode", "country", "text")


def text_of(v: Any) -> str | None:
    return v if v.__class__ is str and v else None


# Codes and their display texts repeat across resources (status, category, LOINC codes): sharing
# the immutable rows saves building and normalising them again (frozen dataclasses are slow to make).
@functools.lru_cache(maxsize=65536)
def code_row(p: str, system: str | None, code: str | None) -> TokenValue:
    return TokenValue(p, system, code)


@functools.lru_cache(maxsize=65536)
def text_row(p: str, text: str) -> TokenValue:
    return TokenValue(p, None, None, normalize_string(text))


def _coding(p: str, v: Any, out: Out, primary: bool) -> None:
    # Hot path (the codes of every Observation, several times over): checks inlined.
    if v.__class__ is dict:
        system, code = v.get("system"), v.get("code")
        if system.__class__ is not str or not system:
            system = None
        if code.__class__ is not str or not code:
            code = None
        if system or code:
            out.append(code_row(p, system, code))
        if not primary:
            display = v.get("display")
            if display.__class__ is str and display:
                out.append(text_row(p, display))


def coding(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    return lambda v, out: _coding(p, v, out, primary)


def codeable_concept(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        if v.__class__ is dict:
            for item in v.get("coding") or ():
                _coding(p, item, out, primary)
            if not primary and (text := text_of(v.get("text"))):
                out.append(text_row(p, text))

    return run


def identifier_rows(p: str, of_type: str | None, v: Any, out: Out) -> None:
    """system|value, plus `:of-type` rows (type system, "code|value") when `of_type` is given."""
    if v.__class__ is not dict:
        return
    system, value = text_of(v.get("system")), text_of(v.get("value"))
    if system or value:
        out.append(TokenValue(p, system, value))
    id_type = v.get("type")
    if of_type and id_type.__class__ is dict:
        # R4 search: `:text` on an identifier matches Identifier.type.text.
        if text := text_of(id_type.get("text")):
            out.append(text_row(p, text))
        if value:
            for item in id_type.get("coding") or ():
                if item.__class__ is dict and (code := text_of(item.get("code"))):
                    out.append(TokenValue(of_type, text_of(item.get("system")), f"{code}|{value}"))


def identifier(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    of_type = None if primary else p + ":of-type"
    return lambda v, out: identifier_rows(p, of_type, v, out)


def _plain(p: str, v: Any, out: Out) -> None:
    if v.__class__ is str and v:
        out.append(code_row(p, None, v))


def plain_token(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    return lambda v, out: _plain(p, v, out)


def number_token(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    def run(v: Any, out: Out) -> None:
        if v.__class__ is int or v.__class__ is float:
            out.append(TokenValue(p, None, str(v)))

    return run


def contact_point(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    return lambda v, out: _plain(p, v.get("value"), out) if v.__class__ is dict else None


def boolean(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    true, false = TokenValue(p, None, "true"), TokenValue(p, None, "false")
    return lambda v, out: out.append(true if v else false) if v.__class__ is bool else None


def _string(p: str, v: Any, out: Out) -> None:
    if v.__class__ is str and v:
        out.append(StringValue(p, normalize_string(v), v))


def plain_string(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
    return lambda v, out: _string(p, v, out)


def _parts(keys: tuple[str, ...]) -> Maker:
    def make(p: str, tz: dt.tzinfo, primary: bool) -> Convert:
        def run(v: Any, out: Out) -> None:
            if v.__class__ is dict:
                for key in keys:
                    part = v.get(key)
                    if part.__class__ is list:
                        for item in part:
                            _string(p, item, out)
                    else:
                        _string(p, part, out)

        return run

    return make


human_name = _parts(NAME_PARTS)
address = _parts(ADDRESS_PARTS)
