"""Shared fixtures. The reference data lives beside the checkout at ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Storage engines for engine-parameterised tests (`storage_url`, marker `all_engines`).
pytest_plugins = ["tests.storage.engines"]

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("FHIR_SERVER_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared reference data folder; tests that need it skip with a clear message if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (set FHIR_SERVER_SHARED_DATA)")
    return SHARED_DATA
