"""The delivery worker: a background task in every server process; the one holding the lease
delivers.

Everything it knows is in the store, nothing in process memory is shared: the queue is the outbox
(records written with the triggering write), each subscription's retry state is a record, the
subscription's status is the Subscription resource itself (changed through the normal write path,
so every change is a new version), and a lease picks one process of several to deliver. Delivery
is at-least-once: a queued notification is deleted only after the endpoint answered 2xx, so a
crash or restart between sending and deleting sends it again.

Per subscription, notifications go out in enqueue order and a failure holds the rest back:
retries follow `RetryPolicy` (by default 5 attempts, 1 s doubling); after the last one the
subscription turns `error` with the reason in `Subscription.error`, retries continue every
`subscription_slow_retry` seconds, and the first success turns it back to `active`. A `requested`
subscription is activated by a handshake (`notify.ping`); an `error` one with nothing queued is
probed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from typing import Any

import httpx

from fhir_server.errors import FhirError
from fhir_server.fhir import jsonio
from fhir_server.interactions.context import FhirRequest, Services
from fhir_server.storage.base import Record, Storage
from fhir_server.subscriptions.matching import (
    LIVE_STATUSES,
    OUTBOX,
    SubscriptionIndex,
    live_subscriptions,
    outbox_prefix,
)
from fhir_server.subscriptions.model import SubscriptionSpec, parse_subscription
from fhir_server.subscriptions.notify import Event, HttpRequest, notification, ping
from fhir_server.subscriptions.ssrf import EndpointRefused, check_endpoint

log = logging.getLogger("fhir_server.subscriptions")

STATE = "subscription-state"  # record kind: retry state of one subscription, keyed by its id
LEASE = "subscription-delivery"
LEASE_TTL_S = 30.0
BATCH = 100
SWEEP_EVERY_S = 60.0
STOP_GRACE_S = 1.0
MAX_REASON = 500  # characters of a failure reason kept in Subscription.error


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 1.0
    slow_s: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row."""
        if failures >= self.attempts:
            return self.slow_s
        return float(self.backoff_s * 2.0 ** (failures - 1))


class _LeaseLost(Exception):
    pass


class DeliveryWorker:
    def __init__(self, ctx: Services, index: SubscriptionIndex) -> None:
        self.ctx = ctx
        self.index = index
        self.storage: Storage = ctx.storage
        s = ctx.settings
        self.policy = RetryPolicy(
            s.subscription_retry_attempts, s.subscription_retry_backoff, s.subscription_slow_retry
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._renewed = -float("inf")
        self._swept = -float("inf")

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        # No redirects (they could lead past the SSRF check) and no proxy settings from the
        # environment: the server calls exactly the endpoint it checked.
        self._client = httpx.AsyncClient(
            timeout=self.ctx.settings.subscription_timeout, follow_redirects=False, trust_env=False
        )
        self._task = asyncio.create_task(self._run(), name="subscription-delivery")

    async def stop(self) -> None:
        """Let the current step finish (a storage transaction is not interrupted), then end;
        cancel only what is still running after a short grace period (a slow endpoint)."""
        self._stopping.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=STOP_GRACE_S)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.storage.release_lease(LEASE, self.owner)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except _LeaseLost:
                pass
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("Subscription delivery pass failed")
            with contextlib.suppress(TimeoutError):
                poll = self.ctx.settings.subscription_poll_seconds
                await asyncio.wait_for(self._stopping.wait(), poll)

    async def _hold_lease(self) -> None:
        if time.monotonic() - self._renewed < LEASE_TTL_S / 3:
            return
        if not await self.storage.acquire_lease(LEASE, self.owner, LEASE_TTL_S):
            self._renewed = -float("inf")
            raise _LeaseLost
        self._renewed = time.monotonic()

    # -- one pass --------------------------------------------------------------------------
    async def run_once(self) -> None:
        """Serve every live subscription once (if this process holds the lease). The holder
        renews the lease every third of its TTL, so an idle server does not write every poll."""
        await self._hold_lease()
        subs = await live_subscriptions(self.ctx, self.storage)
        for spec in subs:
            if self._stopping.is_set():
                return
            await self._serve(spec)
        if time.monotonic() - self._swept > SWEEP_EVERY_S:
            await self._sweep({s.id for s in subs})
            self._swept = time.monotonic()

    async def _serve(self, spec: SubscriptionSpec) -> None:
        now = time.time()
        if spec.end_us is not None and spec.end_us <= now * 1_000_000:
            await self._set_status(spec, "off", None)
            return
        state = await self._state(spec)
        if state["next_at"] > now:
            return
        status = spec.status
        queue = await self._queue(spec.id)
        if status == "requested" or (status == "error" and not queue):
            if not await self._attempt(spec, status, state, ping(spec)):
                return
            state, status = await self._recovered(spec, status)
        for record in queue:
            if not await self._attempt(spec, status, state, await self._request(spec, record)):
                return
            await self.storage.delete_record(OUTBOX, record.key)
            if state["failures"] or status != "active":
                state, status = await self._recovered(spec, status)

    async def _attempt(
        self, spec: SubscriptionSpec, status: str, state: dict[str, Any], req: HttpRequest
    ) -> bool:
        """Send; on failure record it (and turn the subscription to error when due)."""
        if self._stopping.is_set():
            return False  # not a failure: nothing recorded, the next process start resumes
        await self._hold_lease()
        reason = await self._send(spec, req)
        if reason is None:
            return True
        failures = int(state["failures"]) + 1
        doc = {
            "failures": failures,
            "next_at": time.time() + self.policy.delay(failures),
            "endpoint": spec.endpoint,
            "error": reason,
        }
        await self.storage.put_record(STATE, spec.id, doc)
        log.info("Notification to Subscription/%s failed (%d): %s", spec.id, failures, reason)
        if failures >= self.policy.attempts and status != "error":
            await self._set_status(spec, "error", reason)
        return False

    async def _recovered(self, spec: SubscriptionSpec, status: str) -> tuple[dict[str, Any], str]:
        await self.storage.delete_record(STATE, spec.id)
        if status != "active":
            await self._set_status(spec, "active", None)
        return _fresh_state(spec), "active"

    async def _send(self, spec: SubscriptionSpec, req: HttpRequest) -> str | None:
        """None on a 2xx answer, else why not."""
        assert self._client is not None, "worker not started"
        try:
            await check_endpoint(
                spec.endpoint, self.index.allowed, self.ctx.settings.subscription_timeout
            )
        except EndpointRefused as err:
            return err.diagnostics
        try:
            # Streamed and closed unread: the answer's body is never needed (nor buffered).
            async with self._client.stream(
                req.method, req.url, headers=list(req.headers), content=req.body
            ) as resp:
                status = resp.status_code
        except Exception as exc:  # any failure to deliver is a reason, never a crash
            reason = f"{type(exc).__name__} calling {req.method} {req.url}: {exc}"
            return reason.rstrip(": ")[:MAX_REASON]
        if 200 <= status < 300:
            return None
        return f"{req.method} {req.url} answered HTTP {status}"[:MAX_REASON]

    async def _request(self, spec: SubscriptionSpec, record: Record) -> HttpRequest:
        d = record.doc
        event = Event(record.key, d["type"], d["id"], int(d["version"]), d["method"], int(d["at"]))
        body: bytes | None = None
        if spec.content == "full-resource":
            stored = await self.storage.vread(event.resource_type, event.id, event.version)
            body = stored.body if stored is not None and not stored.deleted else None
        return notification(spec, event, body, self.index.base_url())

    # -- store access ------------------------------------------------------------------------
    async def _state(self, spec: SubscriptionSpec) -> dict[str, Any]:
        record = await self.storage.get_record(STATE, spec.id)
        if record is None or record.doc.get("endpoint") != spec.endpoint:
            return _fresh_state(spec)  # a changed endpoint starts afresh
        return record.doc

    async def _queue(self, subscription_id: str) -> list[Record]:
        prefix = outbox_prefix(subscription_id)
        records = await self.storage.list_records(OUTBOX, prefix, BATCH)
        return [r for r in records if r.key.startswith(prefix)]

    async def _set_status(self, spec: SubscriptionSpec, status: str, error: str | None) -> None:
        """Change Subscription.status through the normal write path (a new version), unless the
        subscription was turned off, deleted or re-pointed in the meantime."""
        from fhir_server.interactions.update import update_in

        try:
            async with self.storage.transaction() as tx:
                current = await tx.read("Subscription", spec.id)
                if current is None or current.deleted:
                    return
                doc = jsonio.loads_own(current.body)
                if (
                    doc.get("status") not in LIVE_STATUSES
                    or parse_subscription(doc).endpoint != spec.endpoint
                ):
                    return
                doc["status"] = status
                if error is None:
                    doc.pop("error", None)
                else:
                    doc["error"] = error
                req = FhirRequest("PUT", f"Subscription/{spec.id}", base_url=self.index.base_url())
                await update_in(self.ctx, tx, req, "Subscription", spec.id, doc)
            log.info("Subscription/%s is now %s", spec.id, status)
        except FhirError as err:
            log.warning("Could not set Subscription/%s to %s: %s", spec.id, status, err.diagnostics)

    async def _sweep(self, live: set[str]) -> None:
        """Drop queued notifications of subscriptions that are gone or off."""
        after: str | None = None
        while True:
            records = await self.storage.list_records(OUTBOX, after, BATCH)
            if not records:
                return
            for record in records:
                sub_id = record.key.split("/", 1)[0]
                if sub_id in live or await self._is_live(sub_id):
                    live.add(sub_id)
                    after = f"{sub_id}0"  # "0" follows "/": skips the rest of its key range
                    break
                await self.storage.delete_record(OUTBOX, record.key)
                after = record.key

    async def _is_live(self, subscription_id: str) -> bool:
        stored = await self.storage.read("Subscription", subscription_id)
        if stored is None or stored.deleted:
            return False
        return bool(jsonio.loads_own(stored.body).get("status") in LIVE_STATUSES)


def _fresh_state(spec: SubscriptionSpec) -> dict[str, Any]:
    return {"failures": 0, "next_at": 0.0, "endpoint": spec.endpoint}


def start_worker(ctx: Services) -> DeliveryWorker:
    """Start delivering (called from the app's lifespan; `stop()` it on shutdown)."""
    index = ctx.write_hooks
    if not isinstance(index, SubscriptionIndex):
        index = SubscriptionIndex(ctx)
        ctx.write_hooks = index
    worker = DeliveryWorker(ctx, index)
    worker.start()
    return worker
