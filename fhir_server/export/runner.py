"""The background export runner, one per server process (started in the app's lifespan).

Every `export_poll_seconds` it lists the job records and:
- starts each accepted or running job that no process holds: it takes the job's lease
  (`Storage.acquire_lease`, 30 s, renewed every 10 s by a heartbeat while the job runs), so with
  several server processes a job runs exactly once; a job whose process died is resumed from its
  last checkpoint by whichever process takes the expired lease (after a clean shutdown the lease
  is released at once); a job that loses its lease stops at its next page;
- deletes the files and records of cancelled jobs and of jobs past their expiry time.

A job that cannot continue (its files vanished, an unexpected error, too many attempts) is marked
failed with the reason, which the status endpoint reports as a 500 OperationOutcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

from fhir_server.export import job as jobs
from fhir_server.export.execute import execute
from fhir_server.export.job import ExportJob
from fhir_server.export.ndjson import JobFiles, job_dir, remove_job_files
from fhir_server.fhir.dates import now_us
from fhir_server.interactions.context import Services

log = logging.getLogger("fhir_server.export")
MAX_ATTEMPTS = 5
SAVE_EVERY_S = 0.5


def job_services(services: Services, job: ExportJob) -> Services:
    """The services as the job's requester sees them: the same enforcement as their requests."""
    if job.grant is None:
        return services
    from fhir_server.auth.enforce import scoped_services
    from fhir_server.auth.grant import AccessGrant

    fields = {**job.grant, "scopes": tuple(job.grant.get("scopes", ()))}
    return scoped_services(services, AccessGrant(**fields), job.base_url)


@dataclass
class ExportRunner:
    services: Services
    lease_ttl_s: float = 30.0
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _loop_task: asyncio.Task[None] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._loop_task = asyncio.create_task(self._loop(), name="export-runner")

    async def stop(self) -> None:
        """Stop polling and let running jobs stop at their next checkpoint (no task is cancelled
        inside a storage call); they stay resumable, their leases released."""
        self._stopping.set()
        tasks = [t for t in (self._loop_task, *self._tasks.values()) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for t in tasks:
            if not t.done():
                t.cancel()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("export runner tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), self.services.settings.export_poll_seconds
                )

    async def tick(self) -> None:
        storage = self.services.storage
        settings = self.services.settings
        now = now_us()
        for job in await jobs.all_jobs(storage):
            if self._stopping.is_set():
                return
            if job.id in self._tasks:
                continue
            expired = job.expires is not None and job.expires <= now
            if expired or await jobs.cancelled(storage, job.id):
                await self.cleanup(job.id)
            elif job.status in jobs.ACTIVE and len(self._tasks) < settings.export_max_concurrent:
                lease = jobs.lease_name(job.id)
                if await storage.acquire_lease(lease, self.owner, self.lease_ttl_s):
                    task = asyncio.create_task(self._run(job.id), name=f"export-{job.id}")
                    self._tasks[job.id] = task

    async def cleanup(self, job_id: str) -> bool:
        """Delete a job's files and records if no process is running it (a running job sees
        its cancel marker at its next checkpoint and cleans up itself)."""
        if job_id in self._tasks:
            return False
        storage = self.services.storage
        lease = jobs.lease_name(job_id)
        if not await storage.acquire_lease(lease, self.owner, self.lease_ttl_s):
            return False
        remove_job_files(self.services.settings.export_directory(), job_id)
        await jobs.forget(storage, job_id)
        await storage.release_lease(lease, self.owner)
        return True

    async def _run(self, job_id: str) -> None:
        storage = self.services.storage
        lease = jobs.lease_name(job_id)
        try:
            await self._run_held(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("export %s failed", job_id)
        finally:
            self._tasks.pop(job_id, None)
            with contextlib.suppress(Exception):
                await storage.release_lease(lease, self.owner)

    async def _heartbeat(self, job_id: str, done: asyncio.Event, lost: asyncio.Event) -> None:
        """Renew the job's lease every third of its time to live while the job runs, however
        long a page takes; `lost` tells the job another process has taken it over."""
        lease = jobs.lease_name(job_id)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.lease_ttl_s / 3)
            if done.is_set():
                return
            if not await self.services.storage.acquire_lease(lease, self.owner, self.lease_ttl_s):
                lost.set()
                return

    async def _run_held(self, job_id: str) -> None:
        services = self.services
        settings = services.settings
        storage = services.storage
        rec = await storage.get_record(jobs.KIND, job_id)
        if rec is None:
            return
        job = ExportJob.from_doc(rec.doc)
        job.attempts += 1
        directory = job_dir(settings.export_directory(), job_id)
        files = JobFiles(directory, job, settings.export_lines_per_file)
        saved = float("-inf")  # the first checkpoint is saved
        done_event, lost = asyncio.Event(), asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(job_id, done_event, lost))

        async def checkpoint(current: ExportJob) -> bool:
            """Persist progress (at most every SAVE_EVERY_S: each save is a durable write) and
            say whether to go on."""
            nonlocal saved
            if lost.is_set() or await jobs.cancelled(storage, job_id):
                return False  # cancelled, or another process took over: leave the files to it
            now = time.monotonic()
            stopping = self._stopping.is_set()
            if stopping or now - saved >= SAVE_EVERY_S:
                await jobs.save(storage, current)
                saved = now
            return not stopping

        try:
            if job.attempts > MAX_ATTEMPTS:
                raise RuntimeError(f"gave up after {MAX_ATTEMPTS} attempts")
            done = await execute(
                job_services(services, job),
                job,
                files,
                checkpoint,
                page_size=settings.export_page_size,
                settle_s=settings.export_settle_seconds,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            files.close()
            log.exception("export %s failed", job_id)
            job.status = "failed"
            job.failure = f"{type(exc).__name__}: {exc}"
            job.expires = now_us() + settings.export_expiry_seconds * 1_000_000
            remove_job_files(settings.export_directory(), job_id)
            job.files, job.errors = [], []
            if not await jobs.cancelled(storage, job_id):
                await jobs.save(storage, job)
            return
        finally:
            files.close()
            done_event.set()
            await heartbeat
        if done and not lost.is_set():
            job.expires = (job.completed or now_us()) + settings.export_expiry_seconds * 1_000_000
            if not await jobs.cancelled(storage, job_id):
                await jobs.save(storage, job)
        if await jobs.cancelled(storage, job_id):
            remove_job_files(settings.export_directory(), job_id)
            await jobs.forget(storage, job_id)
