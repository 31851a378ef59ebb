"""A fresh store per test on each engine (see `engines.py`), opened through the factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from fhir_server.settings import Settings
from fhir_server.storage.base import Storage
from fhir_server.storage.factory import create_storage


def settings_for(tmp_path: Path, storage_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", storage=storage_url, seed=False)


@pytest.fixture
async def store(tmp_path: Path, storage_url: str | None) -> AsyncIterator[Storage]:
    storage = create_storage(settings_for(tmp_path, storage_url))
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_store(
    tmp_path_factory: pytest.TempPathFactory, module_storage_url: str
) -> AsyncIterator[Storage]:
    """One store for a whole test module (its tests run on the module's event loop)."""
    storage = create_storage(settings_for(tmp_path_factory.mktemp("m"), module_storage_url))
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()
