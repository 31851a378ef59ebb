"""batch and transaction Bundles posted to the base.

A transaction runs in one storage transaction: `urn:uuid:` full URLs and conditional references
(`Patient?identifier=...`) are resolved first, then entries run in the order R4 gives (DELETE, POST,
PUT/PATCH, then GET/HEAD after the commit), and any failure leaves nothing behind. A batch runs each
entry on its own and reports each outcome.
"""

from __future__ import annotations

import base64
import binascii
from contextlib import nullcontext
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server.errors import BadRequest, FhirError, Issue, Unprocessable, operation_outcome
from fhir_server.fhir import jsonio
from fhir_server.interactions import create, delete, patch, update
from fhir_server.interactions.bundles import bundle
from fhir_server.interactions.common import (
    as_stored,
    body_resource,
    http_date,
    location,
    prefer_return,
    prepare_write,
    store,
)
from fhir_server.interactions.conditional import RecordedSearches
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.references import rewrite_references
from fhir_server.storage.base import (
    StoredResource,
    Transaction,
    Write,
    supports_transactions,
    write_coming,
)

# Bundles from this many entries announce themselves to the storage before they write.
LARGE_BUNDLE = 64
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_HEADER_FIELDS = {
    "ifMatch": "if-match",
    "ifNoneMatch": "if-none-match",
    "ifNoneExist": "if-none-exist",
    "ifModifiedSince": "if-modified-since",
}


def entry_request(req: FhirRequest, entry: dict[str, Any], index: int) -> FhirRequest:
    """The FhirRequest an entry's `request` describes (its url made relative to the base)."""
    request = entry.get("request")
    if not isinstance(request, dict):
        raise BadRequest(
            f"Bundle entry {index} has no request", expression=[f"Bundle.entry[{index}]"]
        )
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise BadRequest(
            f"Bundle entry {index} needs request.method (GET, HEAD, POST, PUT, PATCH, DELETE) "
            "and request.url",
            expression=[f"Bundle.entry[{index}].request"],
        )
    base = req.base_url.rstrip("/") + "/"
    if url.startswith(base):
        url = url[len(base) :]
    elif "://" in url.split("?", 1)[0]:  # an absolute URL elsewhere; a query may hold "://"
        raise BadRequest(f"Bundle entry {index} url '{url}' is not on this server")
    split = urlsplit(url)
    headers = {h: str(request[f]) for f, h in _HEADER_FIELDS.items() if request.get(f)}
    if req.header("prefer"):
        headers["prefer"] = str(req.header("prefer"))
    body = entry.get("resource")
    if method == "PATCH":
        body = _patch_body(body, index)
        headers["content-type"] = "application/json-patch+json"
    params = parse_qsl(split.query, keep_blank_values=True)
    path = split.path.strip("/")
    return FhirRequest(method, path, params, headers, body, req.base_url, req.grant)


def _patch_body(resource: Any, index: int) -> Any:
    """A PATCH entry carries its JSON Patch in a Binary resource, base64-encoded."""
    if isinstance(resource, list):
        return resource
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise BadRequest(f"Bundle entry {index}: a PATCH needs a Binary with a JSON Patch")
    try:
        return jsonio.loads(base64.b64decode(resource.get("data", ""), validate=True))
    except (binascii.Error, ValueError):
        raise BadRequest(f"Bundle entry {index}: the Binary does not hold a JSON Patch") from None


def _response_entry(req: FhirRequest, stored: StoredResource | None, status: str) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status}
    out: dict[str, Any] = {}
    if stored is not None and not stored.deleted:
        response["location"] = location(req.base_url, stored)
        response["etag"] = f'W/"{stored.version}"'
        response["lastModified"] = http_date(stored.last_updated)
        out["fullUrl"] = f"{req.base_url}/{stored.resource_type}/{stored.id}"
        prefer = prefer_return(req)
        if prefer == "OperationOutcome":  # R4: the preference applies to each entry
            response["outcome"] = operation_outcome(
                [Issue("information", "informational", f"{status}: {response['location']}")]
            )
        elif prefer != "minimal":
            out["resource"] = jsonio.orjson_fragment(stored.body)
    out["response"] = response
    return out


async def _read_entry(ctx: Services, sub: FhirRequest) -> dict[str, Any]:
    """Run one entry through the router; its errors become the entry's outcome."""
    from fhir_server.interactions.router import dispatch

    try:
        resp = await dispatch(ctx, sub)
    except FhirError as err:
        return {"response": {"status": str(err.status), "outcome": err.outcome()}}
    item: dict[str, Any] = {"response": {"status": str(resp.status)}}
    if "Location" in resp.headers:
        item["response"]["location"] = resp.headers["Location"]
    if "ETag" in resp.headers:
        item["response"]["etag"] = resp.headers["ETag"]
    if resp.body:
        item["resource"] = jsonio.orjson_fragment(resp.body)
    return item


async def _batch(ctx: Services, req: FhirRequest, entries: list[Any]) -> FhirResponse:
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        try:
            sub = entry_request(req, entry if isinstance(entry, dict) else {}, i)
        except FhirError as err:
            out.append({"response": {"status": str(err.status), "outcome": err.outcome()}})
            continue
        out.append(await _read_entry(ctx, sub))
    body = bundle("batch-response", ctx.clock.now_us(), out)
    return FhirResponse(200, jsonio.dumps(body), {})


def _in_entry(err: FhirError, index: int) -> FhirError:
    err.issues = [
        Issue(x.severity, x.code, f"Bundle entry {index}: {x.diagnostics}", x.expression)
        for x in err.issues
    ]
    return err


def _entry_to_check(ctx: Services, sub: FhirRequest) -> dict[str, Any] | None:
    """What a POST or PUT entry will store, for validation before the transaction's lock."""
    if sub.method not in ("POST", "PUT"):
        return None
    parts = [p for p in sub.path.split("/") if p]
    rtype = parts[0] if parts else ""
    if rtype not in ctx.resource_types:
        raise BadRequest(f"Unknown resource type in entry url '{sub.path}'")
    resource = body_resource(sub, rtype)
    if sub.method == "POST":
        return as_stored(ctx, resource, rtype, None)
    if len(parts) == 2:
        update.check_update_id(rtype, parts[1], resource)
        return as_stored(ctx, resource, rtype, parts[1])
    body_id = resource.get("id")
    return as_stored(ctx, resource, rtype, body_id if isinstance(body_id, str) else None)


async def _precheck_entries(ctx: Services, subs: list[FhirRequest]) -> None:
    """Validate every entry up front (on the validation pool for large Bundles)."""
    indexed: list[tuple[int, dict[str, Any]]] = []
    for i, sub in enumerate(subs):
        try:
            candidate = _entry_to_check(ctx, sub)
        except FhirError as err:
            raise _in_entry(err, i) from None
        if candidate is not None:
            indexed.append((i, candidate))
    results = await ctx.validation.check_many([c for _, c in indexed])
    for (i, _), issues in zip(indexed, results, strict=True):
        errors = [x for x in issues if x.severity in ("error", "fatal")]
        if errors:
            raise _in_entry(Unprocessable(errors[0].diagnostics, issues=errors), i)


def _prepare_creates(
    ctx: Services, subs: list[FhirRequest], new_ids: dict[int, str]
) -> dict[int, Write]:
    """The writes of the POST entries that create (no If-None-Exist match), by entry index."""
    out: dict[int, Write] = {}
    for i, id in new_ids.items():
        sub = subs[i]
        rtype = next(p for p in sub.path.split("/") if p)  # checked by _precheck_entries
        try:
            resource = body_resource(sub, rtype)
            out[i] = prepare_write(ctx, resource, rtype, id, 1, 0, "POST", validated=True)
        except FhirError as err:
            raise _in_entry(err, i) from None
    return out


async def _run_entry(
    ctx: Services, tx: Transaction, sub: FhirRequest, new_id: str | None
) -> tuple[StoredResource | None, str]:
    parts = [p for p in sub.path.split("/") if p]
    rtype = parts[0] if parts else ""
    if rtype not in ctx.resource_types:
        raise BadRequest(f"Unknown resource type in entry url '{sub.path}'")
    id = parts[1] if len(parts) > 1 else None
    if sub.method == "POST":
        resource = body_resource(sub, rtype)
        result = await create.create_in(
            ctx, tx, rtype, resource, sub.base_url, sub.header("if-none-exist"), new_id, True
        )
        return result.stored, "201 Created" if result.status == 201 else "200 OK"
    if sub.method == "PUT":
        resource = body_resource(sub, rtype)
        if id is None:
            result = await update.conditional_update_in(ctx, tx, sub, rtype, resource, True)
        else:
            result = await update.update_in(ctx, tx, sub, rtype, id, resource, validated=True)
        return result.stored, "201 Created" if result.status == 201 else "200 OK"
    if sub.method == "PATCH":
        result = await patch.patch_in(ctx, tx, sub, rtype, id)
        return result.stored, "200 OK"
    if id is None:
        deleted = await delete.conditional_delete_in(ctx, tx, sub, rtype)
    else:
        deleted = await delete.delete_in(ctx, tx, sub, rtype, id)
    return deleted, "204 No Content"


async def _transaction(ctx: Services, req: FhirRequest, entries: list[Any]) -> FhirResponse:
    if not supports_transactions(ctx.storage):
        raise FhirError(
            "This server's MongoDB is a standalone mongod, which has no multi-document "
            "transactions, so transaction Bundles are refused (whatever their size). Send the "
            "entries as a batch Bundle, or run MongoDB as a replica set (see the README, "
            "'Running on MongoDB').",
            status=501,
            code="not-supported",
        )
    # A large Bundle tells the storage it is coming, so that a commit due meanwhile can wait
    # for it and write the pages both change once (storage.base.write_coming).
    coming = write_coming(ctx.storage) if len(entries) >= LARGE_BUNDLE else nullcontext()
    with coming:
        subs = [
            entry_request(req, e if isinstance(e, dict) else {}, i) for i, e in enumerate(entries)
        ]
        await _precheck_entries(ctx, subs)
        # References are resolved and new resources prepared before the storage lock, which
        # Bundles queue for: held only to confirm those searches and store, it lets the next
        # Bundle store while this one prepares (`RecordedSearches`).
        searches = RecordedSearches(ctx.storage)
        new_ids = await rewrite_references(ctx, searches, req, entries, subs)
        prepared = _prepare_creates(ctx, subs, new_ids)
    results: list[dict[str, Any] | None] = [None] * len(subs)
    order = sorted(range(len(subs)), key=lambda i: _ORDER[subs[i].method])
    async with ctx.storage.transaction() as tx:
        await searches.confirm(tx)
        for i in order:
            sub = subs[i]
            if sub.method in ("GET", "HEAD"):
                continue
            stored: StoredResource | None
            try:
                if i in prepared:
                    await store(ctx, tx, prepared[i])
                    stored, status = prepared[i].resource, "201 Created"
                else:
                    stored, status = await _run_entry(ctx, tx, sub, new_ids.get(i))
            except FhirError as err:
                raise _in_entry(err, i) from None
            results[i] = _response_entry(req, stored, status)
    for i in order:
        sub = subs[i]
        if sub.method in ("GET", "HEAD"):
            results[i] = await _read_entry(ctx, sub)
    body = bundle("transaction-response", ctx.clock.now_us(), [r or {} for r in results])
    return FhirResponse(200, jsonio.dumps(body), {})


async def process(ctx: Services, req: FhirRequest) -> FhirResponse:
    body = req.body
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base takes a batch or transaction Bundle")
    kind = body.get("type")
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be an array", expression=["Bundle.entry"])
    if kind == "batch":
        return await _batch(ctx, req, entries)
    if kind == "transaction":
        return await _transaction(ctx, req, entries)
    raise BadRequest(
        f"Bundle type '{kind}' cannot be processed; use batch or transaction",
        expression=["Bundle.type"],
    )
