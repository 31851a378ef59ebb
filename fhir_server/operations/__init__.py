"""FHIR operations. Each module lists its `OPERATIONS`; add a module here to register it."""

from __future__ import annotations

from fhir_server.operations.registry import Operation, OperationTable, OperationTarget

ALL_OPERATIONS: list[Operation] = []

from fhir_server.operations import everything, lastn, rpm_billing  # noqa: E402

ALL_OPERATIONS += [*lastn.OPERATIONS, *everything.OPERATIONS, *rpm_billing.OPERATIONS]

from fhir_server.operations import export  # noqa: E402

ALL_OPERATIONS += export.OPERATIONS

from fhir_server.operations import validate  # noqa: E402

ALL_OPERATIONS += validate.OPERATIONS

TABLE = OperationTable(ALL_OPERATIONS)

__all__ = ["ALL_OPERATIONS", "TABLE", "Operation", "OperationTable", "OperationTarget"]
