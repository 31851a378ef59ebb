"""Writing through the storage contract the way `interactions/` does: read, then write version + 1."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import orjson

from fhir_server.fhir.index_values import IndexValue
from fhir_server.storage.base import Method, Storage, StoredResource, Transaction, Write

_clock = itertools.count(1_700_000_000_000_000, 1000)


def now() -> int:
    """A strictly increasing `last_updated` (microseconds)."""
    return next(_clock)


def stored(
    rtype: str, id: str, version: int, *, deleted: bool = False, **fields: object
) -> StoredResource:
    body = b"" if deleted else orjson.dumps({"resourceType": rtype, "id": id, **fields})
    return StoredResource(rtype, id, version, now(), deleted, body)


async def save_in(
    tx: Transaction, rtype: str, id: str, index: Sequence[IndexValue] = (), **fields: object
) -> StoredResource:
    current = await tx.read(rtype, id)
    version = current.version + 1 if current else 1
    res = stored(rtype, id, version, **fields)
    method: Method = "PUT" if current else "POST"
    await tx.write(Write(res, index, current.version if current else 0, method))
    return res


async def save(
    store: Storage, rtype: str, id: str, index: Sequence[IndexValue] = (), **fields: object
) -> StoredResource:
    async with store.transaction() as tx:
        return await save_in(tx, rtype, id, index, **fields)


async def remove(store: Storage, rtype: str, id: str) -> StoredResource:
    async with store.transaction() as tx:
        current = await tx.read(rtype, id)
        assert current is not None
        res = stored(rtype, id, current.version + 1, deleted=True)
        await tx.write(Write(res, (), current.version, "DELETE"))
        return res


def body(res: StoredResource) -> dict[str, object]:
    out: dict[str, object] = orjson.loads(res.body)
    return out
