"""Validating many resources at once on other cores.

Validation (the R4B models above all) is most of the CPU a write costs, and one server process
runs Python on one core. A large transaction or batch Bundle therefore has its entries validated in
a small pool of worker processes, in as many chunks as there are workers, while the event loop
goes on with other requests. Small requests validate inline: shipping a resource to another
process costs more than validating it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from fhir_server import gc_tuning
from fhir_server.errors import Issue
from fhir_server.fhir import jsonio
from fhir_server.fhir.validation import resource_issues
from fhir_server.fhir.validation.model import model_class, model_types

MIN_BATCH = 16
log = logging.getLogger("fhir_server")


def _check_chunk(resources: list[dict[str, Any]]) -> list[list[Issue]]:
    return [resource_issues(r) for r in resources]


def _check_serialised(data: bytes) -> list[list[Issue]]:
    # Resources travel as JSON text: cheaper for the sending process than pickling the dicts.
    return _check_chunk(jsonio.loads_own(data))


# Validation is throughput work; the server process's event loop and SQLite writer are the path
# every write takes in turn. At equal priority the workers took CPU from them exactly when a
# Bundle's store was due, and all waited; below it, alternating small ingest runs gained ~5 %.
_WORKER_NICENESS = 10


def _start_worker(parent: int) -> None:
    """Lower the worker's CPU priority, and make it exit with its server: a worker whose server
    died (even by SIGKILL) must not linger, so it watches the parent pid."""
    os.nice(_WORKER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _warm_up() -> None:
    """Build every model class and load the tables in a worker before the first request needs
    them (about 2 s), then freeze what it built (`gc_tuning`): those ~230,000 long-lived
    objects would otherwise be traversed by every full garbage collection."""
    for rtype in sorted(model_types()):
        model_class(rtype)
    resource_issues({"resourceType": "Patient", "id": "warm-up", "gender": "other"})
    resource_issues(
        {"resourceType": "Observation", "id": "w", "status": "final", "code": {"text": "x"}}
    )
    gc_tuning.freeze_startup_heap()


class ValidationPool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self.processes > 0 and self._executor is None:
            # spawn, not fork: the server process has threads (the SQLite writer and readers)
            ctx = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                self.processes,
                mp_context=ctx,
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
            for _ in range(self.processes):
                self._executor.submit(_warm_up)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def check_many(self, resources: list[dict[str, Any]]) -> list[list[Issue]]:
        if self._executor is None or len(resources) < MIN_BATCH:
            return _check_chunk(resources)
        n = self.processes
        size = -(-len(resources) // n)
        loop = asyncio.get_running_loop()
        chunks = [resources[i : i + size] for i in range(0, len(resources), size)]
        try:
            results = await asyncio.gather(
                *[
                    loop.run_in_executor(self._executor, _check_serialised, jsonio.dumps(c))
                    for c in chunks
                ]
            )
        except BrokenProcessPool:
            log.exception("A validation worker died; validating inline and starting new workers")
            self.shutdown()
            self.start()
            return _check_chunk(resources)
        return [issues for chunk in results for issues in chunk]
