"""WAL checkpoints on a thread of their own.

SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages, on the
connection that commits: here the writer thread, which every write queues for. Copying the pages
into the database file (one `pwrite` per page, then an fsync) was ~12 % of that thread's time
during Synthea ingest. So the writer connection does no checkpoints (`wal_autocheckpoint=0`) and
this thread, with its own connection, runs a PASSIVE checkpoint after commits, at most every
`MIN_INTERVAL_S`: a PASSIVE checkpoint never blocks the writer or the readers, and SQLite goes
back to the start of the WAL at the next write once a checkpoint has copied all of it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger("fhir_server")

MIN_INTERVAL_S = 0.2


class Checkpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._due = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        conn = self._connect()  # opened here: a failure shows at the storage's open
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """A commit added to the WAL (called on the writer thread)."""
        self._due.set()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._due.set()
            self._thread.join()
            self._thread = None

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                self._due.wait()
                if self._stopping:
                    return
                self._due.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy with another process's checkpoint: later
                    log.debug("WAL checkpoint skipped: %s", exc)
                time.sleep(MIN_INTERVAL_S)
        finally:
            conn.close()
