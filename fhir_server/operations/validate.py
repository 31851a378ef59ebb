"""`$validate` (R4 Resource-validate) on every resource type: `[type]/$validate` and
`[type]/[id]/$validate`.

The resource comes as the POST body itself, or as the `resource` parameter of a Parameters body;
at instance level without one, the stored resource is validated. `profile` (query or Parameters)
names a profile to validate against besides those the resource claims in `meta.profile`; `mode`
is create, update, delete or profile. As R4 specifies, the answer is 200 with an OperationOutcome
whether or not the resource is valid (an "All OK" information issue when it is); only a request
that cannot be understood (no resource, a resource of another type, a bad mode) is a 4xx.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import BadRequest, Issue, NotFound, operation_outcome
from fhir_server.fhir import jsonio
from fhir_server.fhir.validation import resource_issues
from fhir_server.interactions.context import FhirRequest, FhirResponse, Services
from fhir_server.interactions.profile_checks import required_profiles
from fhir_server.operations.registry import Operation, OperationTarget
from fhir_server.search.query import Clause, SearchQuery, UriCriterion

MODES = ("create", "update", "delete", "profile")
_URI_KEYS = ("valueUri", "valueCanonical", "valueUrl", "valueString")


def _inputs(req: FhirRequest, rtype: str) -> tuple[Any, list[str], str | None]:
    """(resource or None, profile urls, mode) from the query string and the body."""
    profiles = [v for k, v in req.params if k == "profile"]
    modes = [v for k, v in req.params if k == "mode"]
    body, resource = req.body, None
    if body is not None and not isinstance(body, dict):
        raise BadRequest("The body of $validate must be a resource or a Parameters resource")
    wrapped = (
        isinstance(body, dict)
        and body.get("resourceType") == "Parameters"
        and (rtype != "Parameters" or any(_named(p, "resource") for p in body.get("parameter", [])))
    )
    if wrapped and isinstance(body, dict):
        params = body.get("parameter") or []
        if not isinstance(params, list):
            raise BadRequest("Parameters.parameter must be an array", expression=["parameter"])
        for p in params:
            if _named(p, "resource"):
                resource = p.get("resource")
            elif _named(p, "profile"):
                profiles += [str(p[k]) for k in _URI_KEYS if k in p][:1]
            elif _named(p, "mode"):
                modes += [str(p[k]) for k in ("valueCode", "valueString") if k in p][:1]
    else:
        resource = body
    if len(modes) > 1:
        raise BadRequest("Parameter 'mode' may appear only once", expression=["mode"])
    mode = modes[0] if modes else None
    if mode is not None and mode not in MODES:
        raise BadRequest(f"Unknown mode '{mode}': use {', '.join(MODES)}", expression=["mode"])
    return resource, profiles, mode


def _named(p: Any, name: str) -> bool:
    return isinstance(p, dict) and p.get("name") == name


async def _stored_profile(ctx: Services, url: str) -> bool:
    """Make a StructureDefinition stored in the server (not yet in the registry) known."""
    query = SearchQuery(
        ("StructureDefinition",), (Clause((UriCriterion("url", url.split("|")[0]),)),), count=1
    )
    page = await ctx.storage.search(query)
    if not page.matches:
        return False
    return ctx.profiles.add(jsonio.loads_own(page.matches[0].body))


async def _subject(
    ctx: Services, rtype: str, id: str | None, resource: Any, mode: str | None
) -> Any:
    if resource is not None or id is None or mode == "delete":
        return resource
    stored = await ctx.storage.read(rtype, id)
    if stored is None or stored.deleted:
        raise NotFound(f"{rtype}/{id} is not known")
    return jsonio.loads_own(stored.body)


async def validate(ctx: Services, req: FhirRequest, target: OperationTarget) -> FhirResponse:
    rtype = target.rtype or ""
    resource, profiles, mode = _inputs(req, rtype)
    resource = await _subject(ctx, rtype, target.id, resource, mode)
    issues: list[Issue] = []
    if mode == "delete":
        if target.id is None:
            raise BadRequest("mode=delete needs an instance: [type]/[id]/$validate")
        if (rtype, target.id) in ctx.read_only:
            text = f"{rtype}/{target.id} is one of the server's own conformance resources"
            issues.append(Issue("error", "business-rule", f"{text} and cannot be deleted", [rtype]))
        return _outcome(issues)
    if not isinstance(resource, dict):
        raise BadRequest("Nothing to validate: send the resource, or a Parameters 'resource'")
    if resource.get("resourceType") != rtype:
        raise BadRequest(
            f"resourceType '{resource.get('resourceType')}' does not match the URL's type "
            f"'{rtype}'",
            expression=["resourceType"],
        )
    issues += resource_issues(resource)
    rid = resource.get("id")
    if mode == "update" and not rid:
        issues.append(
            Issue("error", "required", "An update needs the resource id", [f"{rtype}.id"])
        )
    if target.id is not None and rid not in (None, target.id):
        text = f"The resource id '{rid}' does not match the URL id '{target.id}'"
        issues.append(Issue("error", "invalid", text, [f"{rtype}.id"]))
    if mode in ("create", "update") and isinstance(rid, str) and (rtype, rid) in ctx.read_only:
        text = f"{rtype}/{rid} is one of the server's own conformance resources and is read-only"
        issues.append(Issue("error", "business-rule", text, [rtype]))
    wanted = list(dict.fromkeys([*ctx.profiles.claimed(resource), *profiles]))
    wanted += [u for u in required_profiles(ctx, resource) if u not in wanted]
    for url in wanted:
        if not ctx.profiles.knows(url) and not await _stored_profile(ctx, url):
            text = f"Profile {url} is not known to this server"
            issues.append(Issue("error", "not-supported", text, ["profile"]))
            continue
        issues += ctx.profiles.validate(resource, url)
    return _outcome(issues)


def _outcome(issues: list[Issue]) -> FhirResponse:
    if not issues:
        issues = [Issue("information", "informational", "All OK")]
    return FhirResponse(200, jsonio.dumps(operation_outcome(issues)))


OPERATIONS = [
    Operation(
        "validate",
        validate,
        type_level=True,
        instance_level=True,
        definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
    )
]
