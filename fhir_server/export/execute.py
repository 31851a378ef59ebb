"""Running one export job: page through each part's search and append the pages to NDJSON files.

Memory is bounded by one page: `export_page_size` resources (each at most `max_request_bytes`,
as it was accepted on write) plus, for parts that must skip resources an earlier part of the same
type wrote, one `_id` query per earlier part and page. Nothing else grows with the export.

Consistency: `transactionTime` (T) is taken when the job starts; after `export_settle_seconds`
(so writes stamped before T have committed) the first query fixes the engine's snapshot, and
every query of the job is bounded by it. Resources created after the snapshot are left out; a
resource changed between T and the snapshot, or updated in place after it, is exported in its
current version (its lastUpdated is then later than T) and again by the next `_since=T` export,
so consecutive incremental exports never miss a change.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from fhir_server.errors import Issue, operation_outcome
from fhir_server.export.job import ExportJob
from fhir_server.export.ndjson import JobFiles
from fhir_server.export.plan import Part, plan
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import now_us
from fhir_server.interactions.conditional import search_context
from fhir_server.interactions.context import Services
from fhir_server.interactions.subsetting import subset
from fhir_server.interactions.terminology import resolve_terminology
from fhir_server.search.query import Clause, IdCriterion, SearchQuery
from fhir_server.storage.base import StoredResource

# Called after every page with the job as checkpointed; False stops the job (cancelled, or its
# lease was lost to another process).
Checkpoint = Callable[[ExportJob], Awaitable[bool]]


def job_parts(ctx: Services, job: ExportJob) -> list[Part]:
    patients = tuple(job.patients) if job.patients is not None else None
    return plan(job.level, job.params, patients, search_context(ctx, job.base_url))


def _line(stored: StoredResource, elements: list[str] | None) -> bytes:
    if elements is None:
        return stored.body
    return jsonio.dumps(subset(jsonio.loads_own(stored.body), None, elements))


async def _query(ctx: Services, part: Part, count: int, snapshot: int | None) -> SearchQuery:
    query = SearchQuery((part.rtype,), part.clauses, count=count, snapshot=snapshot)
    return await resolve_terminology(ctx, query)


async def _unseen(
    ctx: Services, earlier: list[Part], matches: list[StoredResource], snapshot: int | None
) -> list[StoredResource]:
    """`matches` minus those an earlier part of the same type exported."""
    seen: set[str] = set()
    ids = tuple(m.id for m in matches)
    for part in earlier:
        with_ids = dataclasses.replace(part, clauses=(*part.clauses, Clause((IdCriterion(ids),))))
        page = await ctx.storage.search(await _query(ctx, with_ids, len(ids), snapshot))
        seen.update(m.id for m in page.matches)
    return [m for m in matches if m.id not in seen]


def _warnings(job: ExportJob) -> list[bytes]:
    return [
        jsonio.dumps(operation_outcome([Issue("warning", "not-supported", text)]))
        for text in job.params.warnings
    ]


async def start(ctx: Services, job: ExportJob, files: JobFiles, parts: list[Part],
                settle_s: float) -> None:  # fmt: skip
    """Fix transactionTime and the snapshot (once per job; a resumed job keeps its own)."""
    if job.snapshot is not None:
        return
    job.transaction_time = now_us()
    job.total_parts = len(parts)
    await asyncio.sleep(settle_s)
    snapshot = 0
    if parts:
        page = await ctx.storage.search(await _query(ctx, parts[0], 0, None))
        snapshot = page.snapshot
    job.snapshot = snapshot
    job.status = "running"
    files.write_outcomes(_warnings(job))


async def execute(
    ctx: Services,
    job: ExportJob,
    files: JobFiles,
    checkpoint: Checkpoint,
    *,
    page_size: int,
    settle_s: float,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Run `job` from its checkpoint to the end. True when completed, False when stopped."""
    parts = job_parts(ctx, job)
    files.prepare()
    await start(ctx, job, files, parts, settle_s)
    if not await checkpoint(job):
        return False
    for i in range(job.part, len(parts)):
        part = parts[i]
        earlier = [p for p in parts[:i] if p.rtype == part.rtype]
        elements = job.params.elements_for(part.rtype)
        base = await _query(ctx, part, page_size, job.snapshot)
        cursor = tuple(job.cursor) if job.cursor is not None else None
        while True:
            page = await ctx.storage.search(dataclasses.replace(base, after=cursor))
            matches = page.matches
            if earlier and matches:
                matches = await _unseen(ctx, earlier, matches, job.snapshot)
            files.append(part.rtype, [_line(m, elements) for m in matches])
            files.flush()
            job.exported += len(matches)
            cursor = page.next_cursor
            job.part, job.cursor = (i, list(cursor)) if cursor is not None else (i + 1, None)
            if progress is not None:
                progress(len(matches))
            if not await checkpoint(job):
                return False
            if cursor is None:
                break
    files.close()
    job.status = "completed"
    job.completed = now_us()
    return True
