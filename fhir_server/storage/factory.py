"""Choosing the storage engine from the storage URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fhir_server.settings import Settings
from fhir_server.storage.base import Storage


class StorageConfigError(ValueError):
    pass


def create_storage(settings: Settings) -> Storage:
    url = settings.storage_url()
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise StorageConfigError(f"Storage URL '{url}' needs a path: sqlite:///PATH")
        from fhir_server.storage.sqlite import SqliteStorage

        return SqliteStorage(Path(path), synchronous=settings.sqlite_synchronous.upper())
    if scheme in ("mongodb", "mongodb+srv"):
        from pymongo.errors import InvalidURI

        from fhir_server.storage.mongo import MongoStorage

        try:
            return MongoStorage(url)
        except (InvalidURI, ValueError) as exc:
            raise StorageConfigError(f"Invalid MongoDB URL: {exc}") from None
    raise StorageConfigError(
        f"Unsupported storage URL scheme '{scheme}': use sqlite:///PATH or mongodb://HOST/DATABASE"
    )
