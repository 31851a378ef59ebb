"""The built-in SMART App Launch 2.2 / Backend Services authorization server."""

from __future__ import annotations

from fhir_server.auth.server.core import AuthServer
from fhir_server.auth.server.store import create_auth_store, open_key_ring
from fhir_server.settings import Settings


async def open_auth_server(settings: Settings) -> AuthServer:
    """The store (SQLite in the data directory, or the MongoDB database of a mongodb:// storage
    URL) opened, and the signing keys beside it (generated on first start)."""
    store = create_auth_store(settings.data_dir, settings.storage)
    await store.open()
    try:
        keys = await open_key_ring(settings.data_dir, store)
    except BaseException:
        await store.close()
        raise
    return AuthServer(settings, store, keys)


__all__ = ["AuthServer", "open_auth_server"]
