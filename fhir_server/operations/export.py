"""`$export` kick-off (Bulk Data Access IG 2.0): `[base]/$export`, `[base]/Patient/$export`,
`[base]/Group/[id]/$export`, by GET or POST (a `Parameters` body).

The kick-off validates the request, writes an accepted job (fhir_server/export/job.py) and answers
202 with `Content-Location` pointing at the status endpoint (fhir_server/api/export_routes.py);
the runner (fhir_server/export/runner.py) does the work in the background.
"""

from __future__ import annotations

import dataclasses
import uuid
from urllib.parse import urlencode

from fhir_server.auth.grant import AccessGrant
from fhir_server.errors import (
    BadRequest,
    Gone,
    NotFound,
    TooManyRequests,
    information_outcome,
)
from fhir_server.export import job as jobs
from fhir_server.export.job import ExportJob
from fhir_server.export.params import ExportParams, Level, collect, parse_kickoff
from fhir_server.export.plan import export_types
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import now_us
from fhir_server.interactions.common import prefer_lenient
from fhir_server.interactions.conditional import search_context
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.operations.registry import Operation, OperationTarget

STATUS_PATH = "$export-status"
FILE_PATH = "$export-file"
_IG = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"


def respond_async(req: FhirRequest) -> bool:
    prefer = req.header("prefer") or ""
    return any(p.strip().lower() == "respond-async" for p in prefer.replace(";", ",").split(","))


async def request_grant(ctx: Services, req: FhirRequest) -> AccessGrant | None:
    """The caller's grant: set by the HTTP layer, or read here when authorization is on."""
    if req.grant is not None or ctx.authenticate is None:
        return req.grant
    return await ctx.authenticate(req.header("authorization"))


def _narrow(ctx: Services, grant: AccessGrant | None, level: Level,
            params: ExportParams) -> ExportParams:  # fmt: skip
    """Only the types the grant can search; explicitly requested types it cannot: 403."""
    if grant is None:
        return params
    from fhir_server.auth.enforce import Policy, insufficient_scope

    policy = Policy(grant)
    if policy.unrestricted_everywhere("s"):
        return params
    wanted = export_types(level, params, ctx.resource_types)
    if params.associated and not policy.reachable_types("s", ["Provenance"]):
        raise insufficient_scope(
            "includeAssociatedData needs a scope that permits searching Provenance"
        )
    reachable = policy.reachable_types("s", wanted)
    refused = sorted(set(params.types) - set(reachable))
    if refused or not reachable:
        what = ", ".join(refused) or "any resource type"
        raise insufficient_scope(f"The access token's scopes do not permit exporting {what} "
                        "(needs e.g. system/*.rs)")  # fmt: skip
    return dataclasses.replace(params, types=tuple(reachable))


def _check_patients(grant: AccessGrant | None, patients: tuple[str, ...], types: list[str]) -> None:
    """403 when the `patient` parameter names a patient the grant cannot reach: with only
    `patient/` scopes (every rule confined to the token's patient), any other patient. Decided
    by the same `Policy` rules the export's storage view enforces, on the types being exported."""
    if grant is None or not patients:
        return
    from fhir_server.auth.enforce import Policy, insufficient_scope

    policy = Policy(grant)
    if policy.unrestricted_everywhere("s"):
        return
    rules = [r for t in types for r in policy.access_any(t, "s").rules]
    if any(r.patient is None for r in rules):
        return  # a user/ or system/ scope: not confined to one patient's compartment
    reachable = {r.patient for r in rules}
    refused = [p for p in patients if p not in reachable]
    if refused:
        names = ", ".join(f"Patient/{p}" for p in refused)
        raise insufficient_scope(
            f"The access token does not permit exporting the data of {names} "
            "(its patient/ scopes reach only its own patient)",
            expression=["patient"],
        )


async def _group_members(ctx: Services, group_id: str) -> list[str]:
    stored = await ctx.storage.read("Group", group_id)
    if stored is None:
        raise NotFound(f"Group/{group_id} is not known")
    if stored.deleted:
        raise Gone(f"Group/{group_id} has been deleted")
    group = jsonio.loads_own(stored.body)
    members: list[str] = []
    for m in group.get("member") or []:
        ref = str(((m or {}).get("entity") or {}).get("reference") or "")
        kind, _, pid = ref.rpartition("/")
        if kind.rsplit("/", 1)[-1] == "Patient" and pid and pid not in members:
            members.append(pid)
    return members


async def _active(ctx: Services) -> int:
    n = 0
    for job in await jobs.all_jobs(ctx.storage):
        if job.status in jobs.ACTIVE and not await jobs.cancelled(ctx.storage, job.id):
            n += 1
    return n


def _request_url(req: FhirRequest) -> str:
    """The kick-off URL for the manifest's `request`: the query string exactly as received."""
    url = f"{req.base_url}/{req.path}"
    query = req.raw_query or (urlencode(req.params) if req.params else "")
    return f"{url}?{query}" if query else url


async def kickoff(ctx: Services, req: FhirRequest, target: OperationTarget) -> FhirResponse:
    if not respond_async(req):
        raise BadRequest("$export is asynchronous: send the header 'Prefer: respond-async'",
                         expression=["Prefer"])  # fmt: skip
    level: Level = "system" if target.rtype is None else (
        "patient" if target.rtype == "Patient" else "group")  # fmt: skip
    pairs = collect(req.params, req.body if req.method == "POST" else None)
    params = parse_kickoff(level, pairs, lenient=prefer_lenient(req),
                           search=search_context(ctx, req.base_url))  # fmt: skip
    grant = await request_grant(ctx, req)
    params = _narrow(ctx, grant, level, params)
    _check_patients(grant, params.patients, export_types(level, params, ctx.resource_types))
    patients: list[str] | None = list(params.patients) if params.patients else None
    if level == "group":
        assert target.id is not None
        members = await _group_members(ctx, target.id)
        patients = [p for p in members if p in params.patients] if params.patients else members
    limit = ctx.settings.export_max_concurrent
    if await _active(ctx) >= limit:
        raise TooManyRequests(f"{limit} exports are already accepted or running; retry later",
                              headers={"Retry-After": "30"})  # fmt: skip
    job = ExportJob(
        id=uuid.uuid4().hex,
        level=level,
        request=_request_url(req),
        base_url=req.base_url,
        params=params,
        created=now_us(),
        patients=patients,
        group=target.id if level == "group" else None,
        grant=dataclasses.asdict(grant) if grant is not None else None,
    )
    await jobs.save(ctx.storage, job)
    body = jsonio.dumps(information_outcome(f"Export {job.id} accepted"))
    return FhirResponse(202, body, {"Content-Location": f"{req.base_url}/{STATUS_PATH}/{job.id}"})


OPERATIONS: list[Operation] = [
    Operation("export", kickoff, system=True, definition=f"{_IG}/export"),
    Operation(
        "export",
        kickoff,
        type_level=True,
        types=frozenset({"Patient"}),
        definition=f"{_IG}/patient-export",
    ),
    Operation(
        "export",
        kickoff,
        instance_level=True,
        types=frozenset({"Group"}),
        definition=f"{_IG}/group-export",
    ),
]
