"""`Patient/[id]/$everything` and `Encounter/[id]/$everything` (R4), paged with next links.

What is returned: the focal resource and the resources it references, then every resource in its
compartment (the R4 CompartmentDefinitions, `fhir/compartments.py`), and for a patient the Devices
assigned to them (`Device.patient`: R4 keeps Device out of the Patient compartment), each page with
the resources its matches reference (practitioners, organizations, devices, ...).

Compartment membership differs by type (an Observation through `subject` or `performer`, an
Encounter through `patient`), so the types are searched in groups that share their linking
parameters, one group after the other; a page token remembers the group and the keyset position
inside it. Every read is a storage search or read, so the request's view of the store applies.

`start`/`end` filter on care dates: the `date` search parameter of types that have one (resources
without a care date are kept); `_since` on `meta.lastUpdated`; `_type` limits the types returned.
Other parameters are refused with 400 (ignored with `Prefer: handling=lenient`).

Privacy: references are followed only to resources that are not another patient's data. Included
(`search.mode` include) are the patient itself (for an Encounter, its subject), resources outside
the Patient compartment (Practitioner, Organization, Location, Medication, ...), and resources of
Patient-compartment types (and Devices) only when they are in this patient's compartment or in
no patient's: a Group's other members, or an Observation of another patient, are never pulled in.
Each resource appears once per page (bdl-7: a resource matched after it was included becomes
the match); later pages do not include again the focal resource and what it references.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.fhir import jsonio
from fhir_server.fhir.compartments import compartment_params, compartment_resource_types
from fhir_server.fhir.dates import parse_fhir_datetime_range
from fhir_server.fhir.extract import extract_index_values
from fhir_server.fhir.index_values import ReferenceValue
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.interactions.bundles import bundle, full_url, page_url, resource_fragment
from fhir_server.interactions.common import prefer_lenient
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.operations.fetch import read_current
from fhir_server.operations.params import check_names, operation_params, single
from fhir_server.operations.registry import Operation, OperationTarget
from fhir_server.search.query import (
    Clause,
    DateCriterion,
    Include,
    LastUpdatedCriterion,
    MissingCriterion,
    ReferenceCriterion,
    SearchQuery,
)
from fhir_server.storage.base import StoredResource

_LOCAL_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
# Linked to a patient outside the Patient compartment.
_PATIENT_EXTRA = {"Device": ("patient",)}
Group = tuple[tuple[str, ...], tuple[str, ...]]  # (resource types, linking parameters)
KNOWN = frozenset({"start", "end", "_since", "_type", "_count"})


def type_groups(ctype: str, known: frozenset[str], wanted: frozenset[str] | None) -> list[Group]:
    """The compartment's member types grouped by the parameters that link them to it."""
    links: dict[str, tuple[str, ...]] = {
        t: compartment_params(ctype, t) for t in compartment_resource_types(ctype)
    }
    if ctype == "Patient":
        links.update(_PATIENT_EXTRA)
    by_params: dict[tuple[str, ...], list[str]] = {}
    for rtype, params in links.items():
        if params and rtype in known and (wanted is None or rtype in wanted):
            by_params.setdefault(params, []).append(rtype)
    return sorted((tuple(sorted(ts)), ps) for ps, ts in by_params.items())


def references(resource: Any) -> list[tuple[str, str]]:
    """Local references (`Type/id`) anywhere in a resource, in order, without repeats."""
    found: list[tuple[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    m = _LOCAL_REF.match(value)
                    if m and (m.group(1), m.group(2)) not in found:
                        found.append((m.group(1), m.group(2)))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(resource)
    return found


def may_include(resource: dict[str, Any], patient: str | None,
                registry: SearchParamRegistry) -> bool:  # fmt: skip
    """Whether a referenced resource may be included: not another patient's data.

    A Patient only if it is `patient`; a resource of a Patient-compartment type (or a Device,
    linked by `Device.patient`) only if it is in `patient`'s compartment or in no patient's;
    anything else (Practitioner, Organization, Location, Medication, ...) always."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return patient is not None and resource.get("id") == patient
    if not isinstance(rtype, str):
        return False
    params = compartment_params("Patient", rtype) or _PATIENT_EXTRA.get(rtype, ())
    if not params:
        return True
    owners = {
        v.target_id
        for v in extract_index_values(resource, registry)
        if isinstance(v, ReferenceValue) and v.param in params and v.target_type == "Patient"
    }
    return not owners or patient in owners


def _patient_of(focal: StoredResource) -> str | None:
    """The patient whose data the operation returns: the Patient, or the Encounter's subject."""
    if focal.resource_type == "Patient":
        return focal.id
    subject = jsonio.loads(focal.body).get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    m = _LOCAL_REF.match(ref) if isinstance(ref, str) else None
    return m.group(2) if m and m.group(1) == "Patient" else None


class _Page:
    """The entries of one page, each resource once (bdl-7: fullUrl unique in a Bundle)."""

    def __init__(self, req: FhirRequest, registry: SearchParamRegistry, patient: str | None,
                 done: set[str]) -> None:  # fmt: skip
        self.req, self.registry, self.patient = req, registry, patient
        self.entries: list[dict[str, Any]] = []
        self.at: dict[str, int] = {}
        self.done = done  # already returned on an earlier page: not included again

    def match(self, stored: StoredResource) -> None:
        key = f"{stored.resource_type}/{stored.id}"
        if key in self.at:  # included earlier on this page: it is a match after all
            self.entries[self.at[key]]["search"]["mode"] = "match"
            return
        self.at[key] = len(self.entries)
        self.entries.append(_entry(self.req, stored, "match"))

    def include(self, stored: StoredResource) -> None:
        key = f"{stored.resource_type}/{stored.id}"
        if key in self.at or key in self.done:
            return
        if not may_include(jsonio.loads(stored.body), self.patient, self.registry):
            return
        self.at[key] = len(self.entries)
        self.entries.append(_entry(self.req, stored, "include"))


def _types(ctx: Services, params: list[tuple[str, str]]) -> frozenset[str] | None:
    values = [t for k, v in params if k == "_type" for t in v.split(",") if t]
    if not values:
        return None
    unknown = [t for t in values if t not in ctx.resource_types]
    if unknown:
        raise BadRequest(f"Unknown resource type(s) in _type: {', '.join(unknown)}",
                         expression=["_type"])  # fmt: skip
    return frozenset(values)


def _filters(ctx: Services, params: list[tuple[str, str]]) -> tuple[Clause, ...]:
    clauses: list[Clause] = []
    for name, prefix in (("start", "ge"), ("end", "le")):
        value = single(params, name)
        if value is None:
            continue
        try:
            low, high = parse_fhir_datetime_range(value, ctx.tz)
        except ValueError:
            raise BadRequest(f"{name} must be a date, not '{value}'", expression=[name]) from None
        care = DateCriterion("date", prefix, low, high)  # type: ignore[arg-type]
        clauses.append(Clause((care, MissingCriterion("date", "date", True))))
    since = single(params, "_since")
    if since is not None:
        try:
            low, high = parse_fhir_datetime_range(since, ctx.tz)
        except ValueError:
            raise BadRequest(f"_since must be an instant, not '{since}'",
                             expression=["_since"]) from None  # fmt: skip
        clauses.append(Clause((LastUpdatedCriterion("ge", low, high),)))
    return tuple(clauses)


def _count(ctx: Services, params: list[tuple[str, str]]) -> int:
    value = single(params, "_count")
    if value is None:
        return ctx.settings.max_count
    if not value.isdigit() or int(value) < 1:
        raise BadRequest(f"_count must be a positive integer, not '{value}'", expression=["_count"])
    return min(int(value), ctx.settings.max_count)


def _entry(req: FhirRequest, stored: StoredResource, mode: str) -> dict[str, Any]:
    return {"fullUrl": full_url(req.base_url, stored), "resource": resource_fragment(stored),
            "search": {"mode": mode}}  # fmt: skip


async def _focal(
    ctx: Services, stored: StoredResource, wanted: frozenset[str] | None, since: Clause | None
) -> list[tuple[StoredResource, str]]:
    """Page one's head: the focal resource and, without `_type`, what it references."""
    out: list[tuple[StoredResource, str]] = []
    if since is not None and not _after(stored, since):
        return out
    if wanted is None or stored.resource_type in wanted:
        out.append((stored, "match"))
    if wanted is None:
        for rtype, rid in references(jsonio.loads(stored.body)):
            if rtype in ctx.resource_types:
                ref = await ctx.storage.read(rtype, rid)
                if ref is not None and not ref.deleted:
                    out.append((ref, "include"))
    return out


def _after(stored: StoredResource, since: Clause) -> bool:
    crit = since.criteria[0]
    return isinstance(crit, LastUpdatedCriterion) and stored.last_updated >= crit.low


async def everything(ctx: Services, req: FhirRequest, target: OperationTarget) -> FhirResponse:
    assert target.rtype is not None and target.id is not None
    ctype, cid = target.rtype, target.id
    path = f"{ctype}/{cid}/$everything"
    token = req.param("_page")
    state: dict[str, Any] = {}
    if token is not None:
        state = ctx.pages.verify(token)
        if state.get("p") != path:
            raise BadRequest("This page token belongs to another request", expression=["_page"])
        params = [(k, v) for k, v in state["q"]]
    else:
        params = [(k, v) for k, v in operation_params(req) if k not in ("_format", "_pretty")]
        ignored = check_names(params, KNOWN, prefer_lenient(req))
        params = [(k, v) for k, v in params if k not in ignored]
    wanted = _types(ctx, params)
    filters = _filters(ctx, params)
    count = _count(ctx, params)
    groups = type_groups(ctype, ctx.resource_types, wanted)
    since = next((c for c in filters if isinstance(c.criteria[0], LastUpdatedCriterion)), None)

    focal = await read_current(ctx, ctype, cid)
    # Later pages leave out what page one listed at its head: the focal resource, what it cites.
    done = {f"{ctype}/{cid}"}
    if wanted is None and (since is None or _after(focal, since)):
        done |= {f"{t}/{i}" for t, i in references(jsonio.loads(focal.body))}
    out = _Page(req, ctx.registry, _patient_of(focal), done)
    if token is None:
        out.done = set()
        for stored, mode in await _focal(ctx, focal, wanted, since):
            if mode == "match":
                out.match(stored)
            else:
                out.include(stored)
    group_no: int = state.get("g", 0)
    cursor = tuple(state["c"]) if state.get("c") is not None else None
    snapshot: int | None = state.get("s")
    remaining = count
    while remaining > 0 and group_no < len(groups):
        types, link_params = groups[group_no]
        member = Clause(tuple(ReferenceCriterion(p, ctype, cid) for p in link_params))
        includes = () if wanted is not None else tuple(Include(t, "*") for t in types)
        query = SearchQuery(types, (member, *filters), count=remaining, includes=includes,
                            after=cursor, snapshot=snapshot)  # fmt: skip
        page = await ctx.storage.search(query)
        snapshot = page.snapshot
        for stored in page.matches:
            out.match(stored)
        for stored in page.included:
            out.include(stored)
        remaining -= len(page.matches)
        if page.next_cursor is not None and page.matches:
            cursor = page.next_cursor
        else:
            group_no, cursor = group_no + 1, None
    entries = out.entries

    links = [("self", page_url(req.base_url, path, req.params))]
    if group_no < len(groups):
        nxt = {"p": path, "q": params, "g": group_no,
               "c": list(cursor) if cursor is not None else None, "s": snapshot}  # fmt: skip
        links.append(("next", page_url(req.base_url, path, [("_page", ctx.pages.sign(nxt))])))
    body = bundle("searchset", ctx.clock.now_us(), entries, links)
    return FhirResponse(200, jsonio.dumps(body), {})


OPERATIONS = [
    Operation(
        "everything",
        everything,
        instance_level=True,
        types=frozenset({"Patient"}),
        definition="http://hl7.org/fhir/OperationDefinition/Patient-everything",
    ),
    Operation(
        "everything",
        everything,
        instance_level=True,
        types=frozenset({"Encounter"}),
        definition="http://hl7.org/fhir/OperationDefinition/Encounter-everything",
    ),
]
