"""What every interaction receives (the request, the services) and returns (a response).

The interactions know nothing of FastAPI: the HTTP layer and the batch/transaction processor both
build a `FhirRequest` and call `router.dispatch`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Protocol

from fhir_server.auth.grant import AccessGrant, Authenticate
from fhir_server.fhir.profiles import ProfileRegistry
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.interactions.validation_pool import ValidationPool
from fhir_server.search.paging import PageSigner
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage, Transaction, Write


@dataclass
class FhirRequest:
    method: str
    path: str  # relative to the FHIR base, no leading slash: "Patient/1/_history"
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: Any = None  # parsed JSON, if any
    base_url: str = "http://localhost/fhir"
    grant: AccessGrant | None = None  # the caller's access; None when authorization is off
    raw_query: str = ""  # the URL's query string exactly as received (the $export manifest)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None


@dataclass
class FhirResponse:
    status: int
    body: bytes | None = None  # serialised JSON
    headers: dict[str, str] = field(default_factory=dict)


class Clock:
    """Strictly increasing microsecond timestamps, so versions written in a row never tie."""

    def __init__(self) -> None:
        self._last = 0

    def now_us(self) -> int:
        now = time.time_ns() // 1000
        if now <= self._last:
            now = self._last + 1
        self._last = now
        return now


class WriteHooks(Protocol):
    """Work that must happen with every write, inside the writing transaction
    (`interactions.common.store`): raising rolls the whole transaction back."""

    async def before_write(self, tx: Transaction, write: Write) -> None: ...

    async def after_write(self, tx: Transaction, write: Write) -> None: ...


@dataclass
class Services:
    settings: Settings
    storage: Storage
    registry: SearchParamRegistry
    pages: PageSigner
    tz: tzinfo
    validation: ValidationPool = field(default_factory=lambda: ValidationPool(0))
    clock: Clock = field(default_factory=Clock)
    resource_types: frozenset[str] = frozenset()
    # CapabilityStatement bytes per base URL, built on first request: it only changes on restart.
    capability_cache: dict[str, bytes] = field(default_factory=dict)
    # Bearer token -> AccessGrant, set when settings.auth is "on" (fhir_server/auth).
    authenticate: Authenticate | None = None
    # Run around every write (subscriptions' matching and outbox: fhir_server/subscriptions).
    write_hooks: WriteHooks | None = None
    # Profiles resources are validated against when they claim them (meta.profile), and $validate.
    profiles: ProfileRegistry = field(default_factory=ProfileRegistry)
    # (type, id) -> canonical url of the server's own conformance resources (profiles/): read-only.
    read_only: dict[tuple[str, str], str] = field(default_factory=dict)
