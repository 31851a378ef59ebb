"""The completion manifest and the status endpoint's progress text. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from fhir_server.export.job import ExportJob, OutputFile
from fhir_server.fhir.dates import to_instant_text


def file_url(base_url: str, job_id: str, name: str) -> str:
    return f"{base_url}/$export-file/{job_id}/{name}"


def _entry(base_url: str, job_id: str, f: OutputFile) -> dict[str, Any]:
    return {"type": f.type, "url": file_url(base_url, job_id, f.name), "count": f.count}


def manifest(job: ExportJob, base_url: str, *, requires_access_token: bool) -> dict[str, Any]:
    """The IG's completion manifest. `requires_access_token`: whether the file URLs need the
    access token, i.e. whether this server's authorization is on (the files are served behind
    the same authorization as the FHIR API); False for local files (`fhir-server export`)."""
    return {
        "transactionTime": to_instant_text(job.transaction_time or job.created),
        "request": job.request,
        "requiresAccessToken": requires_access_token,
        "output": [_entry(base_url, job.id, f) for f in job.files if f.count],
        "error": [_entry(base_url, job.id, f) for f in job.errors],
    }


def progress(job: ExportJob) -> str:
    if job.status == "accepted" or job.total_parts == 0:
        return f"{job.status}: 0% ({job.exported} resources exported)"
    pct = min(99, 100 * job.part // job.total_parts)
    return f"running: {pct}% ({job.exported} resources exported)"
