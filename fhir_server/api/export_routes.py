"""Bulk Data status and file endpoints (the kick-off is the `$export` operation):

- `GET    /fhir/$export-status/{job}`: 202 + `X-Progress` + `Retry-After` while running, 200 with the
  manifest when complete, 500 with an OperationOutcome if the job failed, 404 once cancelled or
  expired;
- `DELETE /fhir/$export-status/{job}`: cancel, and delete its files (202);
- `GET    /fhir/$export-file/{job}/{file}`: one NDJSON file, streamed from disk.

They are routes of their own (included before the catch-all /fhir route) because a file is
streamed, not held in memory. They authenticate the same way as the FHIR API
(`Services.authenticate`, 401 without a token) and only serve the client that started the job.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from fhir_server.api import fhir_routes
from fhir_server.auth.enforce import insufficient_scope
from fhir_server.errors import FhirError, NotFound, information_outcome
from fhir_server.export import job as jobs
from fhir_server.export.job import ExportJob
from fhir_server.export.manifest import manifest, progress
from fhir_server.export.ndjson import job_dir
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import now_us
from fhir_server.interactions.common import http_date
from fhir_server.interactions.context import Services

router = APIRouter(include_in_schema=False)
NDJSON = "application/fhir+ndjson"


async def _job(services: Services, request: Request, job_id: str) -> ExportJob:
    grant = await fhir_routes.authenticate(services, request, f"$export-status/{job_id}")
    job = await jobs.load(services.storage, job_id, now_us())
    if job is None:
        raise NotFound(f"No export '{job_id}' (unknown, cancelled or expired)")
    if grant is not None and job.client is not None and grant.client_id != job.client:
        raise insufficient_scope("This export was started by another client")
    return job


def _json(status: int, body: object, headers: dict[str, str] | None = None,
          media_type: str = "application/fhir+json") -> Response:  # fmt: skip
    return Response(jsonio.dumps(body), status, headers, f"{media_type}; charset=utf-8")


@router.get("/fhir/$export-status/{job_id}")
async def export_status(request: Request, job_id: str) -> Response:
    services: Services = request.app.state.services
    try:
        job = await _job(services, request, job_id)
        if job.status == "failed":
            err = FhirError(f"Export failed: {job.failure}", status=500, code="exception")
            return fhir_routes.error_response(err)
        if job.status != "completed":
            retry = str(max(1, round(services.settings.export_poll_seconds)))
            return Response(status_code=202, headers={"X-Progress": progress(job),
                                                      "Retry-After": retry})  # fmt: skip
        headers = {"Expires": http_date(job.expires or now_us())}
        body = manifest(job, fhir_routes.base_url(services, request),
                        requires_access_token=services.authenticate is not None)  # fmt: skip
        return _json(200, body, headers, "application/json")
    except FhirError as err:
        return fhir_routes.error_response(err)


@router.delete("/fhir/$export-status/{job_id}")
async def export_cancel(request: Request, job_id: str) -> Response:
    services: Services = request.app.state.services
    try:
        await _job(services, request, job_id)
        await jobs.mark_cancelled(services.storage, job_id)
        runner = getattr(request.app.state, "export_runner", None)
        if runner is not None:
            await runner.cleanup(job_id)  # at once unless a process is running it
        return _json(202, information_outcome(f"Export {job_id} cancelled"))
    except FhirError as err:
        return fhir_routes.error_response(err)


@router.get("/fhir/$export-file/{job_id}/{name}")
async def export_file(request: Request, job_id: str, name: str) -> Response:
    services: Services = request.app.state.services
    try:
        job = await _job(services, request, job_id)
        known = {f.name for f in [*job.files, *job.errors]}
        if job.status != "completed" or name not in known:
            raise NotFound(f"No file '{name}' in export {job_id}")
        path = job_dir(services.settings.export_directory(), job_id) / name
        if not path.is_file():
            raise NotFound(f"No file '{name}' in export {job_id}")
        return FileResponse(path, media_type=NDJSON, headers={"Cache-Control": "no-store"})
    except FhirError as err:
        return fhir_routes.error_response(err)
