"""The server's own SearchParameters (profiles/) and those stored in it, added to the registry.

A SearchParameter resource stored in the server (status `active`) takes effect at the next start
or `fhir-server reindex`; reindexing extracts its values from resources already stored. One whose
expression is outside the supported FHIRPath subset, or whose code is already taken on a base by
another definition, is skipped with a warning rather than failing the start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fhir_server.fhir import jsonio
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.search.query import Clause, SearchQuery, TokenCriterion
from fhir_server.storage.base import Storage

log = logging.getLogger("fhir_server")
DEFAULT_PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


def profile_resources(folder: Path) -> list[dict[str, Any]]:
    """Every conformance resource in the profiles folder, in file-name order."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        doc = jsonio.loads(path.read_bytes(), max_depth=1000)
        if isinstance(doc, dict):
            out.append(doc)
    return out


def add_profile_parameters(registry: SearchParamRegistry, folder: Path) -> int:
    """Our own definitions must be valid: an error here is a bug, so it raises."""
    count = 0
    for res in profile_resources(folder):
        if res.get("resourceType") == "SearchParameter":
            registry.add(res)
            count += 1
    return count


def _collides(registry: SearchParamRegistry, sp: dict[str, Any]) -> str | None:
    for base in sp.get("base") or []:
        existing = registry.get(base, str(sp.get("code")))
        if existing is not None and existing.url != sp.get("url"):
            return f"{base}.{sp.get('code')} is already defined by {existing.url}"
    return None


async def stored_search_parameters(storage: Storage) -> list[dict[str, Any]]:
    active = Clause((TokenCriterion("status", None, "active", any_system=True),))
    out: list[dict[str, Any]] = []
    after: tuple[object, ...] | None = None
    while True:
        page = await storage.search(
            SearchQuery(("SearchParameter",), (active,), count=500, after=after)
        )
        out += [jsonio.loads_own(m.body) for m in page.matches]
        if page.next_cursor is None:
            return out
        after = page.next_cursor


async def add_stored_parameters(registry: SearchParamRegistry, storage: Storage) -> int:
    count = 0
    for sp in await stored_search_parameters(storage):
        if registry.by_url(str(sp.get("url"))) is not None:
            continue  # a copy of a definition the server already has
        clash = _collides(registry, sp)
        if clash:
            log.warning("SearchParameter %s skipped: %s", sp.get("url"), clash)
            continue
        try:
            registry.add(sp)
            count += 1
        except ValueError as exc:
            log.warning("SearchParameter %s skipped: %s", sp.get("url"), exc)
    return count
