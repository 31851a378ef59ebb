"""FHIR operations. Each module lists its `OPERATIONS`; add a module here to register it."""

from __future__ import annotations

from fhir_server.operations.registry import Operation, OperationTable, OperationTarget

ALL_OPERATIONS: list[Operation] = []

TABLE = OperationTable(ALL_OPERATIONS)

__all__ = ["ALL_OPERATIONS", "TABLE", "Operation", "OperationTable", "OperationTarget"]
