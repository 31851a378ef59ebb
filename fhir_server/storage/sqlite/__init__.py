"""The embedded default engine: Python's sqlite3 in WAL mode."""

from fhir_server.storage.sqlite.engine import SqliteStorage

__all__ = ["SqliteStorage"]
