"""Internal records and leases on MongoDB (see `storage.base`): the primitives background work
(exports, notifications) uses to run once across server processes.

`records`: `{_id: {k: kind, y: key}, kd: kind, ky: key, doc: JSON bytes, up: microseconds}`, listed in
key order from the `(kd, ky)` index. A record put inside a transaction is written in the same
MongoDB transaction as its resources (an outbox).

`leases`: `{_id: name, owner, exp: seconds}`. Taking a lease is one atomic `findOneAndUpdate` with
`upsert`: it matches when the caller holds the lease or it has expired, and when another owner holds
it the upsert's insert of the same `_id` fails with a duplicate key, so exactly one process wins.
"""

from __future__ import annotations

import time
from typing import Any

from bson.binary import Binary
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fhir_server.fhir import jsonio
from fhir_server.storage.base import JsonDoc, Record

Doc = dict[str, Any]


def _key(kind: str, key: str) -> Doc:
    return {"k": kind, "y": key}


def _now_us() -> int:
    return time.time_ns() // 1000


async def put(
    coll: AsyncCollection[Doc],
    kind: str,
    key: str,
    doc: JsonDoc,
    session: AsyncClientSession | None = None,
) -> None:
    body = {"kd": kind, "ky": key, "doc": Binary(jsonio.dumps(doc)), "up": _now_us()}
    await coll.replace_one({"_id": _key(kind, key)}, body, upsert=True, session=session)


def _record(d: Doc) -> Record:
    return Record(d["kd"], d["ky"], jsonio.loads(bytes(d["doc"])), int(d["up"]))


async def get(coll: AsyncCollection[Doc], kind: str, key: str) -> Record | None:
    d = await coll.find_one({"_id": _key(kind, key)})
    return _record(d) if d else None


async def list_after(
    coll: AsyncCollection[Doc], kind: str, after_key: str | None, limit: int
) -> list[Record]:
    filt: Doc = {"kd": kind, "ky": {"$gt": after_key or ""}}
    cursor = coll.find(filt, sort=[("ky", 1)], limit=limit)
    return [_record(d) async for d in cursor]


async def delete(coll: AsyncCollection[Doc], kind: str, key: str) -> bool:
    result = await coll.delete_one({"_id": _key(kind, key)})
    return result.deleted_count > 0


async def acquire_lease(coll: AsyncCollection[Doc], name: str, owner: str, ttl_s: float) -> bool:
    now = time.time()
    try:
        doc = await coll.find_one_and_update(
            {"_id": name, "$or": [{"owner": owner}, {"exp": {"$lte": now}}]},
            {"$set": {"owner": owner, "exp": now + ttl_s}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        return False
    return doc is not None and doc.get("owner") == owner


async def release_lease(coll: AsyncCollection[Doc], name: str, owner: str) -> None:
    await coll.delete_one({"_id": name, "owner": owner})
