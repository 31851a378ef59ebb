"""The CapabilityStatement, generated from the same tables the router and OpenAPI use."""

from __future__ import annotations

from typing import Any

from fhir_server import FHIR_VERSION, __version__
from fhir_server.conformance import supported_profiles
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import to_instant_text
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.operations import TABLE as OPERATIONS
from fhir_server.operations import Operation
from fhir_server.storage.base import supports_transactions

# What the server does, per resource type and at system level. Routes, the CapabilityStatement and
# openapi/openapi.json all come from these.
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")


def _search_params(registry: SearchParamRegistry, rtype: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for code, d in sorted(registry.for_type(rtype).items()):
        if d.type == "special":
            continue
        entry: dict[str, Any] = {"name": code, "type": d.type}
        if d.url:
            entry["definition"] = d.url
        if d.description:
            entry["documentation"] = d.description
        out.append(entry)
    return out


def _operation_entries(ops: list[Operation]) -> list[dict[str, Any]]:
    return [
        {"name": op.name, "definition": op.definition} if op.definition else {"name": op.name}
        for op in sorted(ops, key=lambda o: o.name)
    ]


def _type_operations(rtype: str) -> list[Operation]:
    return [
        op
        for op in OPERATIONS.all()
        if (op.type_level or op.instance_level) and (op.types is None or rtype in op.types)
    ]


def _resource(
    registry: SearchParamRegistry, rtype: str, supported: tuple[str, ...] = ()
) -> dict[str, Any]:
    ref_params = sorted(c for c, d in registry.for_type(rtype).items() if d.type == "reference")
    ops = _operation_entries(_type_operations(rtype))
    return {
        "type": rtype,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        **({"supportedProfile": list(supported)} if supported else {}),
        "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical"],
        "searchInclude": ["*", *(f"{rtype}:{p}" for p in ref_params)],
        "searchRevInclude": ["*"],
        "searchParam": _search_params(registry, rtype),
        **({"operation": ops} if ops else {}),
    }


def _security(ctx: Services) -> dict[str, Any]:
    """SMART's oauth-uris extension: PyPI fhirclient discovers the endpoints only through it."""
    from fhir_server.auth.server.core import Urls, public_origin
    from fhir_server.auth.server.discovery import capability_security

    urls = Urls(public_origin(ctx.settings))
    return capability_security(urls, bool(ctx.settings.registration_token))


def build(ctx: Services, base_url: str, now_us: int) -> dict[str, Any]:
    own = supported_profiles(ctx)  # the server's own profiles (profiles/), by constrained type
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": to_instant_text(now_us)[:10],
        "publisher": "fhir-server",
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {
            "description": "FHIR R4 server for telehealth and remote patient monitoring. Dates "
            f"without a time zone are read in {ctx.settings.timezone}.",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                **({"security": _security(ctx)} if ctx.settings.auth == "on" else {}),
                "resource": [
                    _resource(ctx.registry, t, own.get(t, ())) for t in sorted(ctx.resource_types)
                ],
                "interaction": [
                    {"code": c}
                    for c in SYSTEM_INTERACTIONS
                    if c != "transaction" or supports_transactions(ctx.storage)
                ],
                **(
                    {"operation": system_ops}
                    if (system_ops := _operation_entries([o for o in OPERATIONS.all() if o.system]))
                    else {}
                ),
                "searchParam": [
                    {"name": "_id", "type": "token"},
                    {"name": "_lastUpdated", "type": "date"},
                    {"name": "_type", "type": "special", "documentation": "Types to search"},
                    {
                        "name": "_text",
                        "type": "special",
                        "documentation": "Words in the narrative (prefix match; OR between words)",
                    },
                    {
                        "name": "_content",
                        "type": "special",
                        "documentation": "Words anywhere in the resource (prefix match)",
                    },
                    {
                        "name": "_list",
                        "type": "special",
                        "documentation": "Items of the List with this id",
                    },
                    {
                        "name": "_has",
                        "type": "special",
                        "documentation": "Reverse chaining, nested: _has:Type:param:search-param",
                    },
                ],
            }
        ],
    }


def respond(ctx: Services, req: FhirRequest) -> FhirResponse:
    body = ctx.capability_cache.get(req.base_url)
    if body is None:
        body = jsonio.dumps(build(ctx, req.base_url, ctx.clock.now_us()))
        ctx.capability_cache[req.base_url] = body
    return FhirResponse(200, body, {})
