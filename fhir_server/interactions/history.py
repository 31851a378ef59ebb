"""history at instance, type and system level (`_since`, `_at`, `_count`, paging)."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import BadRequest, NotFound
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import parse_fhir_datetime_range
from fhir_server.interactions.bundles import bundle, page_url, resource_fragment
from fhir_server.interactions.common import check_id, http_date
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.storage.base import HistoryEntry, HistoryQuery

_KNOWN = frozenset({"_since", "_at", "_count", "_page", "_format", "_pretty"})
# R4 defines `_list` for history too; this server does not support it, so it is refused rather
# than silently ignored (which would answer with the full history).
_UNSUPPORTED = frozenset({"_list"})
_MAX_BACK = 100  # previous links are kept for this many pages back


def _entry(base_url: str, e: HistoryEntry) -> dict[str, Any]:
    r = e.resource
    url = f"{base_url}/{r.resource_type}/{r.id}"
    out: dict[str, Any] = {"fullUrl": url}
    if not r.deleted:
        out["resource"] = resource_fragment(r)
    request_url = f"{r.resource_type}" if e.method == "POST" else f"{r.resource_type}/{r.id}"
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(e.method, "200 OK")
    if e.method == "PUT" and r.version == 1:
        status = "201 Created"
    out["request"] = {"method": "PUT" if e.method == "PATCH" else e.method, "url": request_url}
    out["response"] = {
        "status": status,
        "etag": f'W/"{r.version}"',
        "lastModified": http_date(r.last_updated),
    }
    return out


def _instant(ctx: Services, name: str, value: str) -> tuple[int, int]:
    try:
        return parse_fhir_datetime_range(value, ctx.tz)
    except ValueError as exc:
        raise BadRequest(f"Invalid {name} '{value}': {exc}", expression=[name]) from None


async def history(
    ctx: Services, req: FhirRequest, path: str, rtype: str | None, id: str | None
) -> FhirResponse:
    params = req.params
    before: int | None = None
    back: list[int | None] = []  # the `before` of each earlier page, the first page's is None
    token = req.param("_page")
    if token is not None:
        state = ctx.pages.verify(token)
        if state.get("p") != path:
            raise BadRequest("This page token belongs to another history", expression=["_page"])
        params = [(k, v) for k, v in state["q"]]
        before = None if state["b"] is None else int(state["b"])
        back = list(state.get("h", []))
    for key, _ in params:
        if key in _UNSUPPORTED:
            raise BadRequest(
                f"History parameter '{key}' is not supported",
                code="not-supported",
                expression=[key],
            )
        if key not in _KNOWN:
            raise BadRequest(f"Unknown history parameter '{key}'", expression=[key])
    since = at = None
    count = ctx.settings.default_count
    for key, value in params:
        if key == "_since":
            since = _instant(ctx, key, value)[0]
        elif key == "_at":
            at = _instant(ctx, key, value)
        elif key == "_count":
            if not value.isdigit():
                raise BadRequest(f"_count must be a non-negative integer, not '{value}'")
            count = min(int(value), ctx.settings.max_count)
    if id is not None:
        assert rtype is not None
        check_id(id)
        if await ctx.storage.read(rtype, id) is None:
            raise NotFound(f"{rtype}/{id} is not known")
    page = await ctx.storage.history(HistoryQuery(rtype, id, since, at, count, before))
    clean = [(k, v) for k, v in params if k != "_page"]
    links = [("self", page_url(req.base_url, path, req.params))]
    links.append(("first", page_url(req.base_url, path, clean)))
    if token is not None and back:
        prev_before, prev_back = back[-1], back[:-1]
        if prev_before is None and not prev_back:
            links.append(("previous", page_url(req.base_url, path, clean)))
        else:
            state = {"p": path, "q": clean, "b": prev_before, "h": prev_back}
            links.append(
                ("previous", page_url(req.base_url, path, [("_page", ctx.pages.sign(state))]))
            )
    if page.next_before_seq is not None:
        # (a walk back stops after _MAX_BACK pages: the token stays small)
        state = {
            "p": path,
            "q": clean,
            "b": page.next_before_seq,
            "h": [*back, before][-_MAX_BACK:],
        }
        links.append(("next", page_url(req.base_url, path, [("_page", ctx.pages.sign(state))])))
    entries = [_entry(req.base_url, e) for e in page.entries]
    body = bundle("history", ctx.clock.now_us(), entries, links, page.total)
    return FhirResponse(200, jsonio.dumps(body), {})
