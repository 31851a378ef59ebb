"""All configuration in one class. Every option is also an environment variable FHIR_SERVER_<NAME>."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_SERVER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    storage: str | None = Field(
        default=None, description="Storage URL; default sqlite:///<data-dir>/fhir.db"
    )
    workers: int = 1
    seed: bool = Field(default=True, description="Load seed_data/ into an empty store at start")
    seed_dir: Path | None = None
    profiles_dir: Path | None = Field(
        default=None, description="The server's conformance resources; default profiles/"
    )
    public_url: str | None = Field(
        default=None, description="Public base URL (scheme://host:port); default from the socket"
    )
    max_request_bytes: int = 10 * 1024 * 1024
    max_json_depth: int = 100
    default_count: int = 20
    max_count: int = 1000
    timezone: str = Field(default="UTC", description="Zone for dates written without one")
    validation_processes: int = Field(
        default=2, description="Worker processes that validate large Bundles (0: validate inline)"
    )
    auth: Literal["on", "off"] = Field(
        default="on", description="SMART authorization; 'off' only for local experiments"
    )
    sqlite_synchronous: str = Field(
        default="FULL", description="SQLite synchronous pragma: FULL (durable) or NORMAL"
    )

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.data_dir / 'fhir.db'}"

    def fhir_base(self, fallback_origin: str) -> str:
        origin = (self.public_url or fallback_origin).rstrip("/")
        return f"{origin}/fhir"
