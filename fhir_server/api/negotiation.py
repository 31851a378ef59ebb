"""Content negotiation: this server speaks FHIR JSON (and CSV from a few operations), and says so."""

from __future__ import annotations

from fhir_server.errors import NotAcceptable, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_FORMAT_JSON = frozenset({"json", *_JSON_TYPES})
_BODY_TYPES = frozenset({*_JSON_TYPES, "application/json-patch+json", "text/json"})
FORM = "application/x-www-form-urlencoded"
# CSV: only for operations that produce it ($rpm-billing at system level); see `check_produced`.
CSV = "text/csv"
_FORMAT_CSV = frozenset({"csv", CSV})


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _fhir_version_ok(media_range: str) -> bool:
    """A `fhirVersion` parameter on a media range must name R4 (4.0, or 4.0.x)."""
    for param in media_range.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "fhirversion":
            version = value.strip().strip('"')
            return version == "4.0" or version.startswith("4.0.")
    return True


def response_type(accept: str | None, format_param: str | None) -> str:
    """The response media type, or 406 when the client asks only for something else (XML)."""
    if format_param is not None:
        # An unencoded `+` (`_format=application/fhir+json`, as the spec writes it) arrives as a
        # space: no media type has a space, so read it back as the `+` it was.
        format_param = format_param.replace(" ", "+")
        if _media_type(format_param) in _FORMAT_CSV:
            return CSV
        if _media_type(format_param) not in _FORMAT_JSON:
            raise NotAcceptable(
                f"_format '{format_param}' is not supported: this server returns FHIR JSON only"
            )
        return FHIR_JSON
    if not accept:
        return FHIR_JSON
    ranges = [t for t in accept.split(",") if _fhir_version_ok(t)]
    if not ranges:
        raise NotAcceptable(f"Cannot produce '{accept}': this server speaks FHIR R4 (4.0)")
    types = [_media_type(t) for t in ranges]
    if types[0] == CSV:
        return CSV
    if any(t in _JSON_TYPES or t in ("*/*", "application/*") for t in types):
        if "application/json" in types and FHIR_JSON not in types:
            return "application/json"
        return FHIR_JSON
    raise NotAcceptable(f"Cannot produce '{accept}': this server returns FHIR JSON only")


def _json_instead(accept: str | None, format_param: str | None) -> str:
    """The JSON type to answer with when CSV was preferred but cannot be given; 406 when the
    client accepts nothing else (`_format=csv`, or an Accept of text/csv alone)."""
    if format_param is not None and _media_type(format_param.replace(" ", "+")) in _FORMAT_CSV:
        raise NotAcceptable("_format=csv is offered by operations that produce CSV only")
    rest = ",".join(t for t in (accept or "").split(",") if _media_type(t) != CSV)
    if not rest.strip():
        raise NotAcceptable("text/csv is offered by operations that produce CSV only")
    return response_type(rest, None)


def csv_only_for_operations(
    media_type: str, method: str, path: str, accept: str | None, format_param: str | None
) -> str:
    """CSV is produced by some operations only: anything else answers JSON if accepted, or 406."""
    is_operation = path.rstrip("/").rsplit("/", 1)[-1].startswith("$")
    if media_type == CSV and not (is_operation and method in ("GET", "HEAD", "POST")):
        return _json_instead(accept, format_param)
    return media_type


def csv_if_produced(
    media_type: str, content_type: str | None, accept: str | None, format_param: str | None
) -> str:
    """After an operation ran: CSV if it produced CSV, else JSON if accepted, else 406."""
    if media_type == CSV and not (content_type or "").startswith(CSV):
        return _json_instead(accept, format_param)
    return media_type


def error_type(media_type: str) -> str:
    """Errors are OperationOutcomes: JSON even when CSV was asked for."""
    return FHIR_JSON if media_type == CSV else media_type


def check_body_type(content_type: str | None, *, form_allowed: bool) -> bool:
    """True when the body is a form (POST _search); 415 for anything that is not JSON."""
    if not content_type:
        return False
    media = _media_type(content_type)
    if form_allowed and media == FORM:
        return True
    if media == "application/merge-patch+json":
        raise UnsupportedMediaType(
            "JSON Merge Patch is not supported: PATCH takes JSON Patch "
            "(Content-Type: application/json-patch+json)"
        )
    if media not in _BODY_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type '{media}' is not supported: send application/fhir+json"
        )
    return False
