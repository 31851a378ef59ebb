"""The error hierarchy. Raised anywhere; turned into an OperationOutcome at one boundary (api/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    """One OperationOutcome.issue."""

    severity: str  # fatal | error | warning | information
    code: str  # IssueType code: invalid, not-found, conflict, processing, ...
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class FhirError(Exception):
    """An error with an HTTP status and one or more OperationOutcome issues."""

    status: int = 400
    code: str = "processing"

    def __init__(
        self,
        diagnostics: str,
        *,
        status: int | None = None,
        code: str | None = None,
        expression: list[str] | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.diagnostics = diagnostics
        self.headers = headers or {}
        self.issues = issues or [Issue("error", self.code, diagnostics, expression or [])]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status = 400
    code = "invalid"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    """The resource is syntactically JSON but is not valid FHIR R4."""

    status = 422
    code = "processing"


class TooManyRequests(FhirError):
    status = 429
    code = "throttled"


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information_outcome(text: str) -> dict[str, Any]:
    return operation_outcome([Issue("information", "informational", text)])
