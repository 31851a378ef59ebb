"""Jobs survive a restart (resumed from their last checkpoint) and run exactly once across
processes (leases through the store)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import fhir_server.export.runner as runner_module
from fhir_server.export import job as jobs
from fhir_server.export.job import ExportJob
from fhir_server.export.runner import ExportRunner
from tests.export.conftest import (
    download,
    export_settings,
    kickoff,
    patient,
    post_batch,
    running,
    wait_done,
)

N = 150


async def test_stop_in_the_middle_then_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One resource per page, a checkpoint saved at every page: the job is slow enough to stop.
    monkeypatch.setattr(runner_module, "SAVE_EVERY_S", 0.0)
    settings = export_settings(tmp_path, export_page_size=1, export_lines_per_file=40)
    async with running(settings) as (app, client):
        await post_batch(client, [patient(f"p{i:03d}") for i in range(N)])
        url = await kickoff(client, params={"_type": "Patient"})
        job_id = url.rsplit("/", 1)[-1]
        storage = app.state.services.storage
        for _ in range(2000):
            rec = await storage.get_record(jobs.KIND, job_id)
            if rec is not None and rec.doc["exported"] >= 20:
                break
            await asyncio.sleep(0.002)
    # The app has stopped (the lifespan's end), mid-way through the export.
    async with running(settings) as (app, client):
        rec = await app.state.services.storage.get_record(jobs.KIND, job_id)
        assert rec is not None
        stopped = ExportJob.from_doc(rec.doc)
        assert stopped.status in ("running", "completed")
        r = await wait_done(client, url)
        assert r.status_code == 200, r.text
        manifest = r.json()
        data = await download(client, manifest)
        got = [p["id"] for p in data["Patient"]]
        assert sorted(got) == [f"p{i:03d}" for i in range(N)]  # each exactly once
        done = await jobs.load(app.state.services.storage, job_id, 0)
        assert done is not None
        assert stopped.status == "completed" or done.attempts == 2
    assert stopped.status == "running", "the export finished before the app stopped"


async def test_a_job_runs_once_and_a_dead_owner_is_taken_over(tmp_path: Path) -> None:
    settings = export_settings(tmp_path, export_poll_seconds=3600)  # runners tick by hand here
    async with running(settings) as (app, client):
        await post_batch(client, [patient("p1")])
        url = await kickoff(client, params={"_type": "Patient"})
        job_id = url.rsplit("/", 1)[-1]
        services = app.state.services
        # Another process holds the job and then dies: its lease expires after 0.3 s.
        assert await services.storage.acquire_lease(jobs.lease_name(job_id), "dead", 0.3)
        a = ExportRunner(services, lease_ttl_s=5)
        b = ExportRunner(services, lease_ttl_s=5)
        await a.tick()
        await b.tick()
        assert not a._tasks and not b._tasks
        await asyncio.sleep(0.35)
        await a.tick()
        await b.tick()
        assert len(a._tasks) + len(b._tasks) == 1  # exactly one process runs it
        r = await wait_done(client, url)
        assert r.status_code == 200
        assert [o["count"] for o in r.json()["output"]] == [1]


async def test_a_job_that_cannot_resume_fails_cleanly(tmp_path: Path) -> None:
    settings = export_settings(tmp_path, export_poll_seconds=3600)
    async with running(settings) as (app, client):
        await post_batch(client, [patient("p1")])
        url = await kickoff(client, params={"_type": "Patient"})
        job_id = url.rsplit("/", 1)[-1]
        storage = app.state.services.storage
        rec = await storage.get_record(jobs.KIND, job_id)
        assert rec is not None
        broken = ExportJob.from_doc(rec.doc)
        # A checkpoint whose file has vanished (its disk was wiped while the server was down).
        broken.status, broken.snapshot, broken.transaction_time = "running", 10**9, 1
        broken.files = [jobs.OutputFile("Patient", "Patient-1.ndjson", 1, 100)]
        await jobs.save(storage, broken)
        runner = app.state.export_runner
        await runner.tick()
        for _ in range(500):
            if not runner._tasks:
                break
            await asyncio.sleep(0.01)
        r = await client.get(url)
        assert r.status_code == 500
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "Export failed" in r.json()["issue"][0]["diagnostics"]


async def test_a_job_whose_lease_is_taken_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "SAVE_EVERY_S", 0.0)  # a durable save per page: slower
    settings = export_settings(tmp_path, export_page_size=1)
    async with running(settings) as (app, client):
        await post_batch(client, [patient(f"p{i:03d}") for i in range(N)])
        runner = app.state.export_runner
        runner.lease_ttl_s = 0.03  # heartbeat every 10 ms
        url = await kickoff(client, params={"_type": "Patient"})
        job_id = url.rsplit("/", 1)[-1]
        storage = app.state.services.storage
        lease = jobs.lease_name(job_id)
        for _ in range(2000):
            if job_id in runner._tasks:
                break
            await asyncio.sleep(0.002)
        # Another process takes the job over (as if this one had stalled past the lease).
        for _ in range(100):  # (the heartbeat may renew between the two calls: try again)
            await storage.release_lease(lease, runner.owner)
            if await storage.acquire_lease(lease, "thief", 60):
                break
        else:
            raise AssertionError("could not take the lease over")
        for _ in range(500):
            if job_id not in runner._tasks:
                break
            await asyncio.sleep(0.01)
        assert job_id not in runner._tasks
        rec = await storage.get_record(jobs.KIND, job_id)
        assert rec is not None and rec.doc["status"] in ("accepted", "running")
        assert rec.doc["exported"] < N
        await runner.tick()  # the lease is the thief's: this process leaves the job alone
        assert job_id not in runner._tasks
