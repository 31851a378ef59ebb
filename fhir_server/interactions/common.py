"""Pieces every interaction shares: turning a resource into a stored version, and responses."""

from __future__ import annotations

import functools
import os
import re
import time
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fhir_server.errors import (
    BadRequest,
    FhirError,
    Issue,
    PreconditionFailed,
    Unprocessable,
    operation_outcome,
)
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import to_instant_text
from fhir_server.fhir.fulltext import fulltext_values
from fhir_server.fhir.validation import validate_resource
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.profile_checks import (
    check_canonical,
    check_profiles,
    check_writable,
)
from fhir_server.storage.base import Method, StoredResource, Transaction, Write

_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ETAG_RE = re.compile(r'^(?:W/)?"?([0-9]+)"?$')


def new_resource_id() -> str:
    """An id the server assigns: a UUID of version 7 (RFC 9562), the Unix time in milliseconds in
    its first 48 bits and 74 random bits after them.

    Why not random (version 4): every index keyed by id or by a reference's target id (the
    resource table, history, reference and paired indexes) then takes each new entry at a random
    place, and once a store outgrows SQLite's page cache each such insert reads one page and
    dirties another. Ids in creation order put a Bundle's new resources, and the references to
    them, next to each other at the end of those indexes.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
    return str(uuid.UUID(int=value | (rand & (1 << 62) - 1)))


def check_id(id: str) -> None:
    if not _ID_RE.match(id):
        raise BadRequest(f"Invalid resource id '{id}'", expression=["id"])


def body_resource(req: FhirRequest, rtype: str) -> dict[str, Any]:
    body = req.body
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a FHIR resource (a JSON object)")
    if "id" in body and not isinstance(body["id"], str):
        raise Unprocessable(f"id must be a string, not {body['id']!r}", expression=["id"])
    found = body.get("resourceType")
    if found is None:
        raise BadRequest(
            f"The resource has no resourceType (expected '{rtype}')", expression=["resourceType"]
        )
    if found != rtype:
        raise BadRequest(
            f"resourceType '{found}' does not match the URL's type '{rtype}'",
            expression=["resourceType"],
        )
    return body


def parse_etag(value: str, header: str = "If-Match") -> int:
    m = _ETAG_RE.match(value.strip())
    if not m:
        raise BadRequest(f"Malformed {header} header '{value}': expected W/\"<version>\"")
    return int(m.group(1))


def _with_meta(
    resource: dict[str, Any], rtype: str, id: str, version: int, now: int
) -> dict[str, Any]:
    meta = resource.get("meta", {})
    if not isinstance(meta, dict):
        raise Unprocessable("meta must be a JSON object", expression=[f"{rtype}.meta"])
    meta = {**meta, "versionId": str(version), "lastUpdated": to_instant_text(now)}
    out: dict[str, Any] = {"resourceType": rtype, "id": id, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


def as_stored(
    ctx: Services, resource: dict[str, Any], rtype: str, id: str | None
) -> dict[str, Any]:
    """The resource as it will be stored (meta and id stamped), for validating ahead of the write;
    checked against the profiles it claims (outside the storage transaction, like `precheck`)."""
    out = _with_meta(resource, rtype, id or "placeholder", 1, ctx.clock.now_us())
    check_profiles(ctx, out)
    return out


def precheck(ctx: Services, resource: dict[str, Any], rtype: str, id: str | None = None) -> None:
    """Validate a resource as it will be stored, before any lock is taken.

    Validation is the costliest step of a write and does not depend on the version, the time or
    a server-assigned id, so it runs outside the storage transaction: several workers then
    validate in parallel instead of queueing behind the database's write lock.
    """
    out = _with_meta(resource, rtype, id or "placeholder", 1, ctx.clock.now_us())
    validate_resource(out)
    check_profiles(ctx, out)  # the profiles it claims (meta.profile) or the settings require


def prepare_write(
    ctx: Services,
    resource: dict[str, Any],
    rtype: str,
    id: str,
    version: int,
    expected_version: int,
    method: Method,
    *,
    validated: bool = False,
) -> Write:
    """Stamp meta, serialise and extract search values (validating unless `precheck` already
    did): one new version, ready to store."""
    now = ctx.clock.now_us()
    out = _with_meta(resource, rtype, id, version, now)
    check_writable(ctx.read_only, rtype, id)  # the server's own conformance resources
    if ctx.read_only:
        check_canonical(ctx.read_only, rtype, id, out)
    if not validated:
        validate_resource(out)
        check_profiles(ctx, out)
    body = jsonio.dumps(out)
    index = [*ctx.registry.extractor(rtype)(out), *fulltext_values(out)]
    stored = StoredResource(rtype, id, version, now, False, body)
    return Write(stored, index, expected_version, method)


async def store(ctx: Services, tx: Transaction, write: Write) -> None:
    """Put one new version into `tx`. Every create, update, patch and delete (also inside a
    transaction Bundle) stores through here, so the write hooks (subscriptions: matching and the
    notification outbox) run in the same storage transaction as the write."""
    hooks = ctx.write_hooks
    if hooks is not None:
        await hooks.before_write(tx, write)
    await tx.write(write)
    if hooks is not None:
        await hooks.after_write(tx, write)


def deletion(ctx: Services, current: StoredResource) -> Write:
    now = ctx.clock.now_us()
    stored = StoredResource(current.resource_type, current.id, current.version + 1, now, True, b"")
    return Write(stored, (), current.version, "DELETE")


def http_date(us: int) -> str:
    return _http_date(us // 1_000_000)


@functools.lru_cache(maxsize=256)
def _http_date(seconds: int) -> str:  # HTTP dates have whole seconds; writes share them
    return format_datetime(datetime.fromtimestamp(seconds, UTC), usegmt=True)


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": f'W/"{stored.version}"', "Last-Modified": http_date(stored.last_updated)}


def location(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version}"


def write_response(
    req: FhirRequest, stored: StoredResource, status: int, outcome_text: str
) -> FhirResponse:
    """A create/update response honouring `Prefer: return=`."""
    headers = version_headers(stored)
    headers["Location"] = location(req.base_url, stored)
    prefer = prefer_return(req)
    if prefer == "minimal":
        return FhirResponse(status, None, headers)
    if prefer == "OperationOutcome":
        text = jsonio.dumps(
            operation_outcome([Issue("information", "informational", outcome_text)])
        )
        return FhirResponse(status, text, headers)
    return FhirResponse(status, stored.body, headers)


def prefer_return(req: FhirRequest) -> str:
    prefer = req.header("prefer") or ""
    for part in prefer.split(","):
        for item in part.split(";"):
            key, _, value = item.strip().partition("=")
            if key.strip() == "return":
                return value.strip().strip('"')
    return "representation"


def prefer_lenient(req: FhirRequest) -> bool:
    prefer = (req.header("prefer") or "").replace(" ", "")
    return "handling=lenient" in prefer


def check_if_match(req: FhirRequest, current: StoredResource | None) -> None:
    header = req.header("if-match")
    if header is None:
        return
    wanted = parse_etag(header)
    if current is None or current.deleted or current.version != wanted:
        have = "none" if current is None or current.deleted else current.version
        raise PreconditionFailed(
            f"If-Match version {wanted} does not match the current version ({have})"
        )


def outcome_response(err: FhirError) -> FhirResponse:
    return FhirResponse(err.status, jsonio.dumps(err.outcome()), dict(err.headers))
