"""The storage engines every engine-parameterised test runs against (a pytest plugin).

- `sqlite`: always, in the test's temporary directory.
- `mongodb`: a real MongoDB, when FHIR_SERVER_TEST_MONGODB_URI is set (e.g.
  `mongodb://localhost:27017/?replicaSet=rs0`); each test gets its own database, dropped after.
- `standin-not-real-mongodb`: mongoeco's wire-protocol server on the separate Python 3.13
  environment `.venv-standin` (`make standin`), started once per run on a free port. It proves the
  driver code path, not MongoDB's semantics; skipped with a message when the environment is absent.

Tests opt in by using the `storage_url` fixture and being marked `all_engines`; unmarked tests that
use `storage_url` get SQLite only (None: the settings' default).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDIN_PYTHON = Path(
    os.environ.get("FHIR_SERVER_STANDIN_PYTHON", ROOT / ".venv-standin" / "bin" / "python")
)
STANDIN_SERVER = Path(__file__).with_name("standin_server.py")
REAL_URI = os.environ.get("FHIR_SERVER_TEST_MONGODB_URI")
STANDIN = "standin-not-real-mongodb"
ENGINES = ["sqlite", *(["mongodb"] if REAL_URI else []), STANDIN]


def with_database(uri: str, name: str) -> str:
    """The URI with its path set to database `name` (options kept)."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandIn:
    """A running stand-in wire server (subprocess), or why it could not start."""

    def __init__(self, replset: str | None = "standin") -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.uri = ""
        self.problem = ""
        if not STANDIN_PYTHON.exists():
            self.problem = (
                f"MongoDB stand-in environment not found at {STANDIN_PYTHON}: run `make standin` "
                "(needs pyenv's Python 3.13); stand-in runs skipped"
            )
            return
        port = _free_port()
        args = [str(STANDIN_PYTHON), str(STANDIN_SERVER), str(port)]
        if replset:
            args += ["--replset", replset]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until READY or the process ends
        if not line.startswith("READY"):
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            self.problem = f"MongoDB stand-in did not start: {line}{rest}"
            self.stop()
            return
        self.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture(scope="session")
def standin() -> Iterator[StandIn]:
    started = time.monotonic()
    server = StandIn()
    if not server.problem:
        sys.stderr.write(
            f"\n[storage] MongoDB stand-in (mongoeco wire server, not a real MongoDB) at "
            f"{server.uri} started in {time.monotonic() - started:.1f}s\n"
        )
    yield server
    server.stop()


def _drop(uri: str) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(client.get_default_database().name)
    finally:
        client.close()


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> str:
    """Which engine this test runs on (parameterised for tests marked `all_engines`)."""
    return str(getattr(request, "param", "sqlite"))


def mongo_database(request: pytest.FixtureRequest, engine: str) -> str:
    """A new database's URI on the real MongoDB or the stand-in."""
    if engine == "mongodb":
        assert REAL_URI is not None
        base = REAL_URI
    else:
        server: StandIn = request.getfixturevalue("standin")
        if server.problem:
            pytest.skip(server.problem)
        base = server.uri
    return with_database(base, f"fhirtest_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def storage_url(request: pytest.FixtureRequest, engine: str) -> Iterator[str | None]:
    """A fresh store's URL for this test, None for the default SQLite store of the settings."""
    if engine == "sqlite":
        yield None
        return
    uri = mongo_database(request, engine)
    yield uri
    _drop(uri)


@pytest.fixture(scope="module")
def module_storage_url(
    request: pytest.FixtureRequest, engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A store shared by one test module (read-only tests on data loaded once)."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'fhir.db'}"
        return
    uri = mongo_database(request, engine)
    yield uri
    _drop(uri)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "all_engines: run on every storage engine (SQLite; MongoDB if FHIR_SERVER_TEST_MONGODB_URI; "
        "the mongoeco stand-in, not a real MongoDB)",
    )
    config.addinivalue_line(
        "markers", "standin_xfail(reason): a stand-in limitation; expected to fail only there"
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    real = (
        "mongodb (a real MongoDB, FHIR_SERVER_TEST_MONGODB_URI)"
        if REAL_URI
        else "no real MongoDB (set FHIR_SERVER_TEST_MONGODB_URI to run one)"
    )
    standin = (
        f"{STANDIN} (mongoeco's wire server: a stand-in, not a real MongoDB)"
        if STANDIN_PYTHON.exists()
        else f"{STANDIN} skipped: {STANDIN_PYTHON} is absent (make standin)"
    )
    return [f"storage engines: sqlite; {real}; {standin}"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_engines"):
        metafunc.parametrize("engine", ENGINES, indirect=True, ids=ENGINES, scope="module")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = item.get_closest_marker("standin_xfail")
        callspec = getattr(item, "callspec", None)
        if mark and callspec and callspec.params.get("engine") == STANDIN:
            reason = mark.args[0] if mark.args else mark.kwargs.get("reason", "")
            item.add_marker(
                pytest.mark.xfail(reason=f"stand-in limitation: {reason}", strict=False)
            )
