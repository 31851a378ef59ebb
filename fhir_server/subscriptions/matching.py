"""At write time: which live subscriptions a new version matches, queued in the same transaction.

A subscription's criteria are parsed once with the search parser (unknown parameters are a 4xx
when the Subscription is written) and kept, per process, in a small cache of live subscriptions
(requested, active or error) grouped by resource type. For every written version of a type some
subscription watches, the engine is asked inside the writing transaction whether the criteria
plus `_id=<id>` find it (a transaction sees its own writes), so matching uses the same indexes
and semantics as search and no resource body is filtered in Python. A match puts an outbox record
into the same transaction: the notification exists if and only if the write commits.

With no live subscriptions a write costs a dictionary look-up. The cache is reloaded (inside the
writing transaction) after a Subscription is written through this process and at least every
`subscription_refresh_seconds`, since other processes may write Subscriptions too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import time
from typing import Protocol, cast

from fhir_server.errors import FhirError, Unprocessable
from fhir_server.fhir import jsonio
from fhir_server.interactions.conditional import search_context
from fhir_server.interactions.context import Services
from fhir_server.search.parse import parse_search
from fhir_server.search.query import Clause, IdCriterion, SearchQuery
from fhir_server.storage.base import SearchPage, StoredResource, Transaction, Write
from fhir_server.subscriptions.model import SubscriptionSpec, parse_subscription
from fhir_server.subscriptions.ssrf import AllowList, check_endpoint

log = logging.getLogger("fhir_server.subscriptions")

OUTBOX = "subscription-outbox"  # record kind: one queued notification
LIVE_STATUSES = ("requested", "active", "error")
_PAGE = 500


def outbox_prefix(subscription_id: str) -> str:
    """Every outbox key of a subscription starts with this, so its queue is one key range."""
    return f"{subscription_id}/"


def outbox_key(subscription_id: str, at_us: int) -> str:
    """Sorts by enqueue time within the subscription's key range; the suffix keeps keys unique."""
    return f"{outbox_prefix(subscription_id)}{at_us:017d}-{secrets.token_hex(4)}"


def engine_tx(tx: Transaction) -> Transaction:
    """The engine's transaction beneath a per-request wrapper (SMART scoping exposes it as
    `inner`): matching and queueing are the server's own work, not the caller's data access."""
    inner = getattr(tx, "inner", None)
    return cast(Transaction, inner) if inner is not None else tx


def spec_of(stored: StoredResource) -> SubscriptionSpec:
    return parse_subscription(jsonio.loads_own(stored.body))


@dataclasses.dataclass(frozen=True, slots=True)
class LiveSubscription:
    spec: SubscriptionSpec
    query: SearchQuery  # the criteria, ready to be narrowed to one id


class SubscriptionIndex:
    """The write hooks (`Services.write_hooks`) and the per-process cache of live subscriptions."""

    def __init__(self, ctx: Services) -> None:
        self.ctx = ctx
        self.allowed = AllowList.parse(ctx.settings.subscription_allowed_hosts)
        self._by_type: dict[str, tuple[LiveSubscription, ...]] = {}
        self._loaded_at = -math.inf
        self._dirty = True

    def base_url(self) -> str:
        settings = self.ctx.settings
        return settings.fhir_base(f"http://{settings.host}:{settings.port}")

    def criteria_query(self, spec: SubscriptionSpec) -> SearchQuery:
        """The criteria as a one-result `SearchQuery`; 422 naming Subscription.criteria if not
        a valid search for its type."""
        if spec.criteria_type not in self.ctx.resource_types:
            raise Unprocessable(
                f"Subscription.criteria: unknown resource type '{spec.criteria_type}'",
                expression=["Subscription.criteria"],
            )
        params = [(k, v) for k, v in spec.criteria_params if k not in ("_format", "_pretty")]
        try:
            parsed = parse_search(
                search_context(self.ctx, self.base_url()),
                (spec.criteria_type,),
                params,
                default_count=1,
                max_count=1,
            )
        except FhirError as err:
            raise Unprocessable(
                f"Subscription.criteria '{spec.criteria}': {err.diagnostics}",
                expression=["Subscription.criteria"],
            ) from None
        return dataclasses.replace(parsed.query, count=1, total="none", includes=(), sort=())

    async def before_write(self, tx: Transaction, write: Write) -> None:
        """Check a Subscription before it is stored: criteria, channel, endpoint. The SSRF guard
        (with its DNS look-up) runs when a live subscription gets a new endpoint or is turned on
        from `off`; the worker checks again before every delivery."""
        stored = write.resource
        if stored.resource_type != "Subscription" or stored.deleted:
            return
        spec = spec_of(stored)
        self.criteria_query(spec)
        if spec.status not in LIVE_STATUSES:
            return  # an `off` subscription is never called; checked when it is turned on
        previous = await engine_tx(tx).read("Subscription", stored.id)
        if previous is not None and not previous.deleted:
            try:
                before = spec_of(previous)
                if before.status in LIVE_STATUSES and before.endpoint == spec.endpoint:
                    return
            except FhirError:
                pass
        await check_endpoint(spec.endpoint, self.allowed, self.ctx.settings.subscription_timeout)

    async def after_write(self, tx: Transaction, write: Write) -> None:
        stored = write.resource
        if stored.resource_type == "Subscription":
            self._dirty = True
        if stored.deleted:
            return
        refresh_s = self.ctx.settings.subscription_refresh_seconds
        if self._dirty or time.monotonic() - self._loaded_at > refresh_s:
            await self._reload(engine_tx(tx))
        watching = self._by_type.get(stored.resource_type)
        if not watching:
            return
        inner = engine_tx(tx)
        one = Clause((IdCriterion((stored.id,)),))
        for live in watching:
            query = dataclasses.replace(live.query, clauses=(one, *live.query.clauses))
            if not (await inner.search(query)).matches:
                continue
            event = {
                "subscription": live.spec.id,
                "type": stored.resource_type,
                "id": stored.id,
                "version": stored.version,
                "method": write.method,
                "at": stored.last_updated,
            }
            await inner.put_record(OUTBOX, outbox_key(live.spec.id, stored.last_updated), event)

    async def _reload(self, tx: Transaction) -> None:
        self._dirty = False
        self._loaded_at = time.monotonic()
        by_type: dict[str, list[LiveSubscription]] = {}
        now_us = time.time_ns() // 1000
        for spec in await live_subscriptions(self.ctx, tx):
            if spec.end_us is not None and spec.end_us <= now_us:
                continue
            try:
                query = await self._resolved(spec)
            except FhirError as err:
                log.warning("Subscription/%s is ignored: %s", spec.id, err.diagnostics)
                continue
            by_type.setdefault(spec.criteria_type, []).append(LiveSubscription(spec, query))
        self._by_type = {t: tuple(subs) for t, subs in by_type.items()}

    async def _resolved(self, spec: SubscriptionSpec) -> SearchQuery:
        from fhir_server.interactions.terminology import resolve_terminology

        return await resolve_terminology(self.ctx, self.criteria_query(spec))


class Searcher(Protocol):
    async def search(self, query: SearchQuery) -> SearchPage: ...


async def live_subscriptions(ctx: Services, searcher: Searcher) -> list[SubscriptionSpec]:
    """Every Subscription that is requested, active or error (unparseable ones are skipped)."""
    parsed = parse_search(
        search_context(ctx, "http://localhost/fhir"),
        ("Subscription",),
        [("status", ",".join(LIVE_STATUSES))],
        default_count=_PAGE,
        max_count=_PAGE,
    )
    query = parsed.query
    out: list[SubscriptionSpec] = []
    while True:
        page = await searcher.search(query)
        for stored in page.matches:
            try:
                out.append(spec_of(stored))
            except FhirError as err:
                log.warning("Subscription/%s is ignored: %s", stored.id, err.diagnostics)
        if page.next_cursor is None:
            return out
        query = dataclasses.replace(query, after=page.next_cursor, snapshot=page.snapshot)
