"""Resolving a transaction's internal references before any entry runs.

Every POST entry gets its id up front (or the id of the resource its If-None-Exist finds), so that
`urn:uuid:` full URLs can be replaced with `Type/id` everywhere in the Bundle, as R4 requires
("all matching links ... in resource references and elements of type uri"). Conditional references
(`Patient?identifier=...`) must match exactly one resource. The caller chooses what the searches
see: a transaction Bundle resolves on committed data and confirms inside its transaction
(`conditional.RecordedSearches`).
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import BadRequest, PreconditionFailed
from fhir_server.interactions.common import new_resource_id
from fhir_server.interactions.conditional import find_matches, parse_criteria
from fhir_server.interactions.context import FhirRequest, Services
from fhir_server.storage.base import Searcher

_CONDITIONAL_REF = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")
_LOCAL_URN = ("urn:uuid:", "urn:oid:")  # identify entries of this Bundle only


async def _assign_ids(
    ctx: Services, tx: Searcher, entries: list[Any], subs: list[FhirRequest]
) -> tuple[dict[str, str], dict[int, str]]:
    mapping: dict[str, str] = {}
    new_ids: dict[int, str] = {}
    targets: dict[str, int] = {}
    seen_urls: dict[tuple[str, object], int] = {}
    for i, (entry, sub) in enumerate(zip(entries, subs, strict=True)):
        parts = [p for p in sub.path.split("/") if p]
        rtype = parts[0] if parts else ""
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(full_url, str):
            # bdl-7: fullUrl is unique in a Bundle, unless the entries' versionIds differ
            meta = sub.body.get("meta") if isinstance(sub.body, dict) else None
            version = meta.get("versionId") if isinstance(meta, dict) else None
            key = (full_url, version)
            if key in seen_urls:
                raise BadRequest(
                    f"Bundle entries {seen_urls[key]} and {i} have the same fullUrl '{full_url}' "
                    "(bdl-7: fullUrl must be unique in a Bundle)",
                    expression=[f"Bundle.entry[{i}].fullUrl"],
                )
            seen_urls[key] = i
        ref: str | None = None
        if sub.method == "POST":
            ine = sub.header("if-none-exist")
            matches = (
                await find_matches(ctx, tx, rtype, parse_criteria(ine), sub.base_url) if ine else []
            )
            if len(matches) == 1:
                ref = f"{rtype}/{matches[0].id}"
            elif len(matches) > 1:
                raise PreconditionFailed(f"Bundle entry {i}: If-None-Exist matches several {rtype}")
            else:
                new_ids[i] = new_resource_id()
                ref = f"{rtype}/{new_ids[i]}"
        elif sub.method in ("PUT", "DELETE", "PATCH") and len(parts) == 2:
            ref = f"{rtype}/{parts[1]}"
            if ref in targets:
                raise BadRequest(
                    f"Bundle entries {targets[ref]} and {i} both change {ref}",
                    expression=[f"Bundle.entry[{i}]"],
                )
            targets[ref] = i
        elif sub.method == "PUT" and sub.params and isinstance(sub.body, dict):
            matches = await find_matches(ctx, tx, rtype, sub.params, sub.base_url)
            if len(matches) == 1:
                ref = f"{rtype}/{matches[0].id}"
            elif not matches and "id" not in sub.body:
                sub.body["id"] = new_resource_id()
                ref = f"{rtype}/{sub.body['id']}"
        if isinstance(full_url, str) and ref is not None:
            mapping[full_url] = ref
    return mapping, new_ids


async def rewrite_references(
    ctx: Services,
    tx: Searcher,
    req: FhirRequest,
    entries: list[Any],
    subs: list[FhirRequest],
) -> dict[int, str]:
    """Rewrite references in place; return the ids assigned to POST entries by entry index."""
    mapping, new_ids = await _assign_ids(ctx, tx, entries, subs)
    resolved: dict[str, str] = {}

    async def conditional(value: str) -> str:
        if value not in resolved:
            m = _CONDITIONAL_REF.match(value)
            assert m is not None
            rtype = m.group(1)
            if rtype not in ctx.resource_types:
                raise BadRequest(f"Conditional reference '{value}' names an unknown type")
            found = await find_matches(ctx, tx, rtype, parse_criteria(m.group(2)), req.base_url)
            if len(found) != 1:
                raise PreconditionFailed(
                    f"Conditional reference '{value}' matches {len(found) or 'no'} resources; "
                    "it must match exactly one"
                )
            resolved[value] = f"{rtype}/{found[0].id}"
        return resolved[value]

    # One synchronous pass over every body (a coroutine per node would cost more than the walk);
    # conditional references are collected and resolved afterwards, once per distinct value.
    pending: list[tuple[dict[str, Any], str, str]] = []

    def walk(node: Any) -> None:
        if type(node) is dict:
            for key, value in node.items():
                kind = type(value)
                if kind is str:
                    if value in mapping:
                        node[key] = mapping[value]
                    elif key == "reference" and _CONDITIONAL_REF.match(value):
                        pending.append((node, key, value))
                    elif key == "reference" and value.startswith(_LOCAL_URN):
                        raise BadRequest(
                            f"Reference '{value}' matches no fullUrl of the Bundle: "
                            "a urn:uuid or urn:oid reference must name an entry",
                            expression=["Bundle.entry.resource"],
                        )
                elif kind is dict or kind is list:
                    walk(value)
        elif type(node) is list:
            for idx, value in enumerate(node):
                kind = type(value)
                if kind is str:
                    if value in mapping:
                        node[idx] = mapping[value]
                elif kind is dict or kind is list:
                    walk(value)

    for sub in subs:
        if sub.method in ("POST", "PUT") and isinstance(sub.body, dict):
            walk(sub.body)
    for node, key, value in pending:
        node[key] = await conditional(value)
    return new_ids
