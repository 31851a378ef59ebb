"""The OpenAPI document of the FHIR API, generated from the interaction table and the search
parameter registry (so it cannot drift from what the router does). `fhir-server openapi --out
openapi/openapi.json` rewrites the committed copy; a test checks that copy is current."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from fhir_server import FHIR_VERSION, __version__
from fhir_server.fhir.resource_types import resource_types
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.search.parse import RESULT_PARAMETERS

FHIR_JSON = "application/fhir+json"
_ERRORS = {
    "400": "Malformed request or search parameter",
    "404": "Unknown resource or type",
    "405": "Method not allowed here",
    "406": "Only FHIR JSON can be produced",
    "409": "Version conflict",
    "410": "The resource was deleted",
    "412": "If-Match failed or conditional criteria matched several resources",
    "413": "Request body too large",
    "415": "Only FHIR JSON is accepted",
    "422": "The resource is not valid FHIR R4",
}

_READ_ERRORS = ("400", "404", "406", "410")
_WRITE_ERRORS = ("400", "404", "409", "412", "413", "415", "422")


def _body(schema: str) -> dict[str, Any]:
    return {"content": {FHIR_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _op(
    summary: str,
    ok: str,
    ok_schema: str | None,
    params: list[Any],
    body: str | None = None,
    body_type: str = FHIR_JSON,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        ok: {"description": summary, **(_body(ok_schema) if ok_schema else {})}
    }
    errors = _WRITE_ERRORS if body else _READ_ERRORS
    for code in errors:
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {body_type: {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def build(registry: SearchParamRegistry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    parameters: dict[str, Any] = {p: _query(p) for p in (*RESULT_PARAMETERS, "_id", "_lastUpdated")}
    parameters["id"] = _path_param("id")
    parameters["vid"] = _path_param("vid")
    parameters["If-Match"] = _header("If-Match", 'W/"<version>": change only that version')
    parameters["If-None-Exist"] = _header("If-None-Exist", "conditional create criteria")
    for p in ("_since", "_at"):
        parameters[p] = _query(p)
    result_params = [_ref(p) for p in RESULT_PARAMETERS]
    history_params = [_ref("_since"), _ref("_at"), _ref("_count")]
    idp = [_ref("id")]
    for t in sorted(resource_types()):
        criteria = [_ref("_id"), _ref("_lastUpdated")]
        for code, d in sorted(registry.for_type(t).items()):
            if d.type == "special" or code.startswith("_"):
                continue
            parameters[f"{t}.{code}"] = _query(code, d.description)
            criteria.append(_ref(f"{t}.{code}"))
        tag = [t]
        paths[f"/fhir/{t}"] = {
            "get": {**_op(f"Search {t}", "200", "Bundle", criteria + result_params), "tags": tag},
            "post": {**_op(f"Create a {t}", "201", t, [_ref("If-None-Exist")], t), "tags": tag},
            "put": {**_op(f"Conditional update of {t}", "200", t, criteria, t), "tags": tag},
            "delete": {**_op(f"Conditional delete of {t}", "204", None, criteria), "tags": tag},
        }
        paths[f"/fhir/{t}/_search"] = {
            "post": {**_op(f"Search {t} (form body)", "200", "Bundle", []), "tags": tag}
        }
        paths[f"/fhir/{t}/_history"] = {
            "get": {**_op(f"History of all {t}", "200", "Bundle", history_params), "tags": tag}
        }
        paths[f"/fhir/{t}/{{id}}"] = {
            "get": {**_op(f"Read a {t}", "200", t, idp), "tags": tag},
            "put": {
                **_op(f"Update (or create) a {t}", "200", t, [*idp, _ref("If-Match")], t),
                "tags": tag,
            },
            "patch": {
                **_op(
                    f"Patch a {t} (JSON Patch)",
                    "200",
                    t,
                    [*idp, _ref("If-Match")],
                    "JsonPatch",
                    "application/json-patch+json",
                ),
                "tags": tag,
            },
            "delete": {**_op(f"Delete a {t}", "204", None, idp), "tags": tag},
        }
        paths[f"/fhir/{t}/{{id}}/_history"] = {
            "get": {
                **_op(f"History of a {t}", "200", "Bundle", [*idp, *history_params]),
                "tags": tag,
            }
        }
        paths[f"/fhir/{t}/{{id}}/_history/{{vid}}"] = {
            "get": {**_op(f"Read a version of a {t}", "200", t, [*idp, _ref("vid")]), "tags": tag}
        }
    paths["/fhir"] = {
        "post": _op("Process a batch or transaction Bundle", "200", "Bundle", [], "Bundle"),
        "get": _op("Search all types (_type)", "200", "Bundle", [_query("_type"), *result_params]),
    }
    paths["/fhir/metadata"] = {"get": _op("CapabilityStatement", "200", "CapabilityStatement", [])}
    paths["/fhir/_history"] = {
        "get": _op("History of everything", "200", "Bundle", [_query("_since"), _query("_count")])
    }
    paths.update(_operation_paths(result_params))
    resource_schema = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
    }
    schemas: dict[str, Any] = {t: resource_schema for t in resource_types()}
    schemas["Bundle"] = resource_schema
    schemas["OperationOutcome"] = resource_schema
    schemas["CapabilityStatement"] = resource_schema
    schemas["JsonPatch"] = {"type": "array", "items": {"type": "object"}}
    schemas["Parameters"] = resource_schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FHIR R4 server for telehealth and RPM",
            "version": __version__,
            "description": f"FHIR {FHIR_VERSION} REST API. Every error is an OperationOutcome.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": parameters,
            "responses": {
                f"E{code}": {"description": text, **_body("OperationOutcome")}
                for code, text in _ERRORS.items()
            },
        },
    }


def _enum_param(name: str, values: list[str], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "enum": values},
    }


def _operation_paths(result_params: list[Any]) -> dict[str, Any]:
    """The operations of the router's table (system, type and instance level), `$export-status`,
    and compartment search."""
    from fhir_server.fhir.compartments import compartment_params, compartment_resource_types
    from fhir_server.interactions.router import COMPARTMENTS
    from fhir_server.operations import TABLE

    paths: dict[str, Any] = {}
    every_type = sorted(resource_types())

    def add(path: str, op: Any, tag: str, params: list[Any]) -> None:
        summary = f"${op.name}" + (f" ({op.definition})" if op.definition else "")
        entry = paths.setdefault(path, {})
        if "GET" in op.methods and not op.affects_state:
            entry["get"] = {**_op(summary, "200", None, params), "tags": [tag]}
        if "POST" in op.methods:
            post = _op(summary, "200", None, params, "Parameters")
            post["requestBody"]["required"] = False
            entry["post"] = {**post, "tags": [tag]}

    for op in sorted(TABLE.all(), key=lambda o: o.name):
        types = sorted(op.types) if op.types is not None else None
        if op.system:
            add(f"/fhir/${op.name}", op, "Operations", [])
        for level, suffix in (("type", ""), ("instance", "/{id}")):
            if not (op.type_level if level == "type" else op.instance_level):
                continue
            extra = [_ref("id")] if suffix else []
            if types is None:
                tparam = _enum_param("type", every_type, "any resource type")
                add(f"/fhir/{{type}}{suffix}/${op.name}", op, "Operations", [tparam, *extra])
            else:
                for t in types:
                    add(f"/fhir/{t}{suffix}/${op.name}", op, t, extra)
    job = _path_param("job_id")
    paths["/fhir/$export-status/{job_id}"] = {
        "get": {**_op("Bulk export status / manifest", "200", None, [job]), "tags": ["Operations"]},
        "delete": {**_op("Cancel a bulk export", "202", None, [job]), "tags": ["Operations"]},
    }
    for ctype in COMPARTMENTS:
        members = [t for t in compartment_resource_types(ctype) if compartment_params(ctype, t)]
        tparam = _enum_param("type", [*members, "*"], f"a type in the {ctype} compartment, or *")
        params = [_ref("id"), tparam]
        summary = f"Search in the {ctype} compartment"
        paths[f"/fhir/{ctype}/{{id}}/{{type}}"] = {
            "get": {**_op(summary, "200", "Bundle", [*params, *result_params]), "tags": [ctype]}
        }
        paths[f"/fhir/{ctype}/{{id}}/{{type}}/_search"] = {
            "post": {**_op(f"{summary} (form body)", "200", "Bundle", params), "tags": [ctype]}
        }
    return paths


@cache
def openapi_bytes(pretty: bool = False) -> bytes:
    doc = build(SearchParamRegistry.load_default())
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(doc, option=option | orjson.OPT_SORT_KEYS) + (b"\n" if pretty else b"")
