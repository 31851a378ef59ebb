"""Loading files into the store: transaction/batch/collection Bundles, NDJSON, single resources,
folders and .gz files, either in-process or into a running server over HTTP.

Every item becomes a request the server already understands (a transaction or batch Bundle, or a
PUT/POST of one resource), so loading takes exactly the path a client's write would.
"""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_server.fhir import jsonio

# (method, path below the base, JSON body) -> (status, response body)
Send = Callable[[str, str, Any], Awaitable[tuple[int, bytes]]]
NDJSON_BATCH = 200


@dataclass
class LoadSummary:
    created: int = 0
    updated: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (where, why)

    def line(self) -> str:
        return f"created {self.created}, updated {self.updated}, refused {len(self.refused)}"


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and f.name.endswith((".json", ".ndjson", ".json.gz", ".ndjson.gz"))
            )
        else:
            yield p


def _as_request_item(resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource.get("resourceType")
    if "id" in resource:
        return {
            "resource": resource,
            "request": {"method": "PUT", "url": f"{rtype}/{resource['id']}"},
        }
    return {"resource": resource, "request": {"method": "POST", "url": str(rtype)}}


def items(paths: list[Path]) -> Iterator[tuple[str, Any]]:
    """(label, body to POST to the base, or a single resource) for every loadable thing."""
    for f in _files(paths):
        try:
            data = _read(f)
        except OSError as exc:
            yield str(f), exc
            continue
        if ".ndjson" in f.name:
            lines = [ln for ln in data.splitlines() if ln.strip()]
            for start in range(0, len(lines), NDJSON_BATCH):
                batch: list[dict[str, Any]] = []
                for n, ln in enumerate(lines[start : start + NDJSON_BATCH], start + 1):
                    try:
                        batch.append(_as_request_item(jsonio.loads(ln, max_depth=1000)))
                    except Exception as exc:  # a bad line is reported, the rest still loads
                        yield f"{f}:{n}", exc
                yield str(f), {"resourceType": "Bundle", "type": "batch", "entry": batch}
            continue
        try:
            doc = jsonio.loads(data, max_depth=1000)
        except Exception as exc:
            yield str(f), exc
            continue
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            if doc.get("type") in ("transaction", "batch"):
                yield str(f), doc
                continue
            if doc.get("type") == "collection":
                entries = [
                    _as_request_item(e["resource"])
                    for e in doc.get("entry", [])
                    if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                ]
                yield str(f), {"resourceType": "Bundle", "type": "batch", "entry": entries}
                continue
        yield str(f), doc


def _count(summary: LoadSummary, label: str, status: int, body: bytes) -> None:
    doc = jsonio.loads(body, max_depth=10_000) if body else {}
    if status >= 400:
        summary.refused.append((label, _diagnostics(doc) or f"HTTP {status}"))
        return
    if (
        isinstance(doc, dict)
        and doc.get("resourceType") == "Bundle"
        and str(doc.get("type", "")).endswith("-response")
    ):
        for i, e in enumerate(doc.get("entry", [])):
            resp = e.get("response", {})
            code = str(resp.get("status", "")).split(" ")[0]
            if code == "201":
                summary.created += 1
            elif code.startswith("2"):
                summary.updated += 1
            else:
                why = _diagnostics(resp.get("outcome", {})) or f"HTTP {code}"
                summary.refused.append((f"{label} entry {i}", why))
        return
    if status == 201:
        summary.created += 1
    else:
        summary.updated += 1


def _diagnostics(outcome: Any) -> str:
    if isinstance(outcome, dict):
        return "; ".join(str(i.get("diagnostics", "")) for i in outcome.get("issue", []))
    return ""


async def load(paths: list[Path], send: Send, progress: bool = False) -> LoadSummary:
    summary = LoadSummary()
    stream: Any = items(paths)
    if progress:
        from tqdm import tqdm

        stream = tqdm(stream, unit=" bundle", desc="loading")
    for label, item in stream:
        if isinstance(item, Exception):
            summary.refused.append((label, str(item)))
            continue
        if isinstance(item, dict) and item.get("resourceType") == "Bundle":
            status, body = await send("POST", "", item)
        elif isinstance(item, dict):
            req = _as_request_item(item)["request"]
            status, body = await send(req["method"], req["url"], item)
        else:
            summary.refused.append((label, "not a FHIR resource"))
            continue
        _count(summary, label, status, body)
    return summary
