"""R4 Subscriptions with the rest-hook channel.

- `model`: a Subscription resource -> a checked `SubscriptionSpec` (pure).
- `ssrf`: which endpoint addresses the server may reach.
- `notify`: the HTTP request a notification is, as R4 defines it (pure).
- `matching`: at write time, inside the writing transaction, which subscriptions a new version
  matches; their notifications go into the store's outbox in that same transaction.
- `worker`: the background task that delivers the outbox (one process at a time, by lease).
"""
