"""Checks every write makes for profiles: the server's own conformance resources are read-only
(`check_writable`), and a resource that claims a profile the server knows (`meta.profile`) must
conform to it (`check_profiles`, run with the base validation: `interactions/common.py` precheck,
as_stored and prepare_write).

Unknown profiles are ignored, as FHIR allows. With `require_rpm_profiles` on, an Observation with a
`device` reference must conform to the RPM observation profile whether or not it claims it.
"""

from __future__ import annotations

from typing import Any

from fhir_server.conformance import check_canonical, check_writable
from fhir_server.errors import Unprocessable
from fhir_server.interactions.context import Services

RPM_OBSERVATION = "https://fhir-server.dev/fhir/StructureDefinition/rpm-observation"

__all__ = [
    "RPM_OBSERVATION",
    "check_canonical",
    "check_profiles",
    "check_writable",
    "required_profiles",
]


def required_profiles(ctx: Services, resource: dict[str, Any]) -> tuple[str, ...]:
    """Profiles a resource must conform to by the server's settings, claimed or not."""
    if (
        ctx.settings.require_rpm_profiles
        and resource.get("resourceType") == "Observation"
        and resource.get("device") is not None
    ):
        return (RPM_OBSERVATION,)
    return ()


def check_profiles(ctx: Services, resource: dict[str, Any]) -> None:
    """Raise Unprocessable (422) with every error unless `resource` conforms to the profiles it
    claims that the server knows (and those `required_profiles` adds)."""
    issues = ctx.profiles.claimed_issues(resource, required_profiles(ctx, resource))
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        first = errors[0]
        where = f" at {first.expression[0]}" if first.expression else ""
        more = f" (and {len(errors) - 1} more issues)" if len(errors) > 1 else ""
        raise Unprocessable(
            f"{resource.get('resourceType')} does not conform to its profile: "
            f"{first.diagnostics}{where}{more}",
            issues=errors,
        )
