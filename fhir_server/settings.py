"""All configuration in one class. Every option is also an environment variable FHIR_SERVER_<NAME>."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_validation_processes() -> int:
    """One per core this process may run on, but one: that core stays for the server process,
    whose event loop and SQLite writer every write passes through. Validation processes on every
    core starve them (bench/README.md, "Ingest: Bundles prepared before the lock")."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (Linux)
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


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
        default_factory=default_validation_processes,
        description="Worker processes that validate large Bundles (0: validate inline); "
        "default one per CPU core but one",
    )
    auth: Literal["on", "off"] = Field(
        default="on", description="SMART authorization; 'off' only for local experiments"
    )
    sqlite_synchronous: str = Field(
        default="FULL", description="SQLite synchronous pragma: FULL (durable) or NORMAL"
    )
    # SMART authorization server (fhir_server/auth/server)
    registration_token: str | None = Field(
        default=None, description="Enables /auth/register (RFC 7591) for bearers of this token"
    )
    access_token_lifetime: int = Field(default=3600, description="Seconds (user-facing apps)")
    backend_token_lifetime: int = Field(default=300, description="Seconds (Backend Services)")
    refresh_token_lifetime: int = Field(
        default=100 * 86400, description="Seconds a grant's refresh tokens live (rotation keeps it)"
    )
    auth_code_lifetime: int = 60
    access_token_alg: Literal["RS256", "ES384"] = "RS256"
    login_max_failures_per_user: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window: int = Field(default=900, description="Seconds failed logins count")
    external_issuer: str | None = Field(
        default=None, description="Also accept access tokens from this issuer (iss)"
    )
    external_jwks_url: str | None = Field(
        default=None, description="JWKS URL verifying the external issuer's JWT access tokens"
    )
    external_introspection_url: str | None = Field(
        default=None, description="RFC 7662 endpoint of the external issuer (opaque tokens)"
    )
    external_client_id: str | None = None
    external_client_secret: str | None = None
    external_audience: str | None = Field(
        default=None, description="aud the external tokens carry; default the FHIR base"
    )
    # Bulk Data export (fhir_server/export)
    export_dir: Path | None = Field(
        default=None, description="Where export files are written; default <data-dir>/exports"
    )
    export_max_concurrent: int = Field(
        default=2, description="Exports accepted or running at once; more get 429"
    )
    export_expiry_seconds: int = Field(
        default=3600, description="Seconds finished export files stay downloadable"
    )
    export_lines_per_file: int = Field(
        default=100_000, description="Resources per NDJSON file before it is split"
    )
    export_page_size: int = Field(
        default=500, description="Resources read per page while exporting (bounds memory)"
    )
    export_poll_seconds: float = Field(
        default=1.0, description="How often the export runner looks for work and expired files"
    )
    export_settle_seconds: float = Field(
        default=0.5, description="Wait after transactionTime so writes stamped before it commit"
    )
    # Subscriptions, rest-hook (fhir_server/subscriptions)
    subscription_allowed_hosts: str = Field(
        default="",
        description="Comma-separated host names, addresses or CIDRs notifications may reach even "
        "if loopback, link-local or private (SSRF guard)",
    )
    subscription_retry_attempts: int = Field(
        default=5, description="Failed deliveries in a row before a subscription turns 'error'"
    )
    subscription_retry_backoff: float = Field(
        default=1.0, description="Seconds before the first retry; doubles with each failure"
    )
    subscription_slow_retry: float = Field(
        default=60.0, description="Seconds between retries once a subscription is in 'error'"
    )
    subscription_timeout: float = Field(
        default=5.0, description="Seconds a notification request may take (connect and answer)"
    )
    subscription_poll_seconds: float = Field(
        default=1.0, description="How often the delivery worker looks for work"
    )
    subscription_refresh_seconds: float = Field(
        default=2.0, description="How long a process caches the list of live subscriptions"
    )

    # Profiles (profiles/, fhir_server/fhir/profiles)
    require_rpm_profiles: bool = Field(
        default=False,
        description="Reject (422) an Observation with a device reference that does not conform "
        "to the RPM observation profile",
    )

    def export_directory(self) -> Path:
        return self.export_dir or self.data_dir / "exports"

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.data_dir / 'fhir.db'}"

    def fhir_base(self, fallback_origin: str) -> str:
        origin = (self.public_url or fallback_origin).rstrip("/")
        return f"{origin}/fhir"
