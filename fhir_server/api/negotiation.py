"""Content negotiation: this server speaks FHIR JSON only, and says so clearly."""

from __future__ import annotations

from fhir_server.errors import NotAcceptable, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_FORMAT_JSON = frozenset({"json", *_JSON_TYPES})
_BODY_TYPES = frozenset({*_JSON_TYPES, "application/json-patch+json", "text/json"})
FORM = "application/x-www-form-urlencoded"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def response_type(accept: str | None, format_param: str | None) -> str:
    """The response media type, or 406 when the client asks only for something else (XML)."""
    if format_param is not None:
        if _media_type(format_param) not in _FORMAT_JSON:
            raise NotAcceptable(
                f"_format '{format_param}' is not supported: this server returns FHIR JSON only"
            )
        return FHIR_JSON
    if not accept:
        return FHIR_JSON
    types = [_media_type(t) for t in accept.split(",")]
    if any(t in _JSON_TYPES or t in ("*/*", "application/*") for t in types):
        if "application/json" in types and FHIR_JSON not in types:
            return "application/json"
        return FHIR_JSON
    raise NotAcceptable(f"Cannot produce '{accept}': this server returns FHIR JSON only")


def check_body_type(content_type: str | None, *, form_allowed: bool) -> bool:
    """True when the body is a form (POST _search); 415 for anything that is not JSON."""
    if not content_type:
        return False
    media = _media_type(content_type)
    if form_allowed and media == FORM:
        return True
    if media not in _BODY_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type '{media}' is not supported: send application/fhir+json"
        )
    return False
