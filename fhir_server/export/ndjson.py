"""The NDJSON files of one job, in `<export dir>/<job id>/`: `<Type>-<n>.ndjson`, a new file after
`lines_per_file` resources, and `OperationOutcome-<n>.ndjson` for the manifest's `error` list.

Files are appended to and flushed at every checkpoint; the job document records each file's
checkpointed size, so a job resumed after a crash first truncates its files back to the last
checkpoint (and removes files started after it) before continuing from the saved cursor.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from fhir_server.export.job import ExportJob, OutputFile


def job_dir(root: Path, job_id: str) -> Path:
    return root / job_id


def remove_job_files(root: Path, job_id: str) -> None:
    shutil.rmtree(job_dir(root, job_id), ignore_errors=True)


class JobFiles:
    def __init__(self, directory: Path, job: ExportJob, lines_per_file: int) -> None:
        self.dir = directory
        self.job = job
        self.lines_per_file = max(1, lines_per_file)
        self._handle: BinaryIO | None = None
        self._handle_name: str | None = None

    def prepare(self) -> None:
        """Bring the directory back to the job's last checkpoint."""
        self.dir.mkdir(parents=True, exist_ok=True)
        known = {f.name: f for f in [*self.job.files, *self.job.errors]}
        for path in self.dir.glob("*.ndjson"):
            entry = known.get(path.name)
            if entry is None:
                path.unlink()
            elif path.stat().st_size > entry.size:
                with path.open("r+b") as f:
                    f.truncate(entry.size)
        for entry in known.values():
            path = self.dir / entry.name
            if not path.exists():
                raise FileNotFoundError(f"export file {path} is missing")

    def _open(self, entry: OutputFile) -> BinaryIO:
        if self._handle_name != entry.name or self._handle is None:
            self.close()
            self._handle = (self.dir / entry.name).open("ab")
            self._handle_name = entry.name
        return self._handle

    def _current(self, rtype: str) -> OutputFile:
        mine = [f for f in self.job.files if f.type == rtype]
        if mine and mine[-1].count < self.lines_per_file:
            return mine[-1]
        entry = OutputFile(rtype, f"{rtype}-{len(mine) + 1}.ndjson")
        self.job.files.append(entry)
        return entry

    def append(self, rtype: str, lines: list[bytes]) -> None:
        i = 0
        while i < len(lines):
            entry = self._current(rtype)
            room = self.lines_per_file - entry.count
            chunk = lines[i : i + room]
            data = b"".join(line + b"\n" for line in chunk)
            self._open(entry).write(data)
            entry.count += len(chunk)
            entry.size += len(data)
            i += len(chunk)

    def write_outcomes(self, lines: list[bytes]) -> None:
        """The OperationOutcome file (written once, before the first resource)."""
        if not lines or self.job.errors:
            return
        entry = OutputFile("OperationOutcome", "OperationOutcome-1.ndjson")
        data = b"".join(line + b"\n" for line in lines)
        (self.dir / entry.name).write_bytes(data)
        entry.count, entry.size = len(lines), len(data)
        self.job.errors.append(entry)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None
        self._handle_name = None
