"""An export job: the JSON document kept with `Storage.put_record` (kind "export-job"), and the
small store of job records (a cancel marker is a separate record, so a DELETE never races with
the runner's checkpoints overwriting the job).

Lifecycle: accepted -> running (checkpointed after every page) -> completed | failed. A cancelled
job (DELETE) or an expired one answers 404 at once; the runner deletes its files and records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_server.export.params import ExportParams, Level
from fhir_server.storage.base import Storage

KIND = "export-job"
CANCEL_KIND = "export-cancel"
Status = Literal["accepted", "running", "completed", "failed"]
ACTIVE: tuple[Status, ...] = ("accepted", "running")


@dataclass
class OutputFile:
    type: str
    name: str
    count: int = 0
    size: int = 0  # bytes written and checkpointed

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ExportJob:
    id: str
    level: Level
    request: str  # the kick-off URL, as the manifest reports it
    base_url: str
    params: ExportParams
    created: int  # µs
    patients: list[str] | None = None  # None: every patient (or system level)
    group: str | None = None
    grant: dict[str, Any] | None = None  # the caller's AccessGrant fields; None: auth off
    status: Status = "accepted"
    transaction_time: int | None = None  # µs
    snapshot: int | None = None  # the engine position bounding every query of the job
    part: int = 0  # the part being exported
    cursor: list[Any] | None = None  # keyset position within that part
    files: list[OutputFile] = field(default_factory=list)
    errors: list[OutputFile] = field(default_factory=list)
    exported: int = 0
    total_parts: int = 0
    completed: int | None = None  # µs
    expires: int | None = None  # µs
    failure: str | None = None
    attempts: int = 0

    @property
    def client(self) -> str | None:
        return None if self.grant is None else str(self.grant.get("client_id"))

    def to_doc(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["params"] = self.params.to_json()
        doc["files"] = [f.to_json() for f in self.files]
        doc["errors"] = [f.to_json() for f in self.errors]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ExportJob:
        values = dict(doc)
        values["params"] = ExportParams.from_json(doc["params"])
        values["files"] = [OutputFile(**f) for f in doc.get("files", [])]
        values["errors"] = [OutputFile(**f) for f in doc.get("errors", [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


async def load(storage: Storage, job_id: str, now_us: int) -> ExportJob | None:
    """The job if it exists and is neither cancelled nor expired."""
    rec = await storage.get_record(KIND, job_id)
    if rec is None or await storage.get_record(CANCEL_KIND, job_id) is not None:
        return None
    job = ExportJob.from_doc(rec.doc)
    if job.expires is not None and job.expires <= now_us:
        return None
    return job


async def save(storage: Storage, job: ExportJob) -> None:
    await storage.put_record(KIND, job.id, job.to_doc())


async def all_jobs(storage: Storage) -> list[ExportJob]:
    out: list[ExportJob] = []
    after: str | None = None
    while True:
        page = await storage.list_records(KIND, after, 100)
        out += [ExportJob.from_doc(r.doc) for r in page]
        if len(page) < 100:
            return out
        after = page[-1].key


async def cancelled(storage: Storage, job_id: str) -> bool:
    return await storage.get_record(CANCEL_KIND, job_id) is not None


async def mark_cancelled(storage: Storage, job_id: str) -> None:
    await storage.put_record(CANCEL_KIND, job_id, {"id": job_id})


async def forget(storage: Storage, job_id: str) -> None:
    await storage.delete_record(KIND, job_id)
    await storage.delete_record(CANCEL_KIND, job_id)


def lease_name(job_id: str) -> str:
    return f"export:{job_id}"
