"""The table of FHIR operations (`$name`): one entry per operation, shared by the router and the
CapabilityStatement so they cannot disagree.

An operation module defines `OPERATIONS: list[Operation]`; `fhir_server/operations/__init__.py`
collects them. Handlers receive the target (`OperationTarget`) and answer like any interaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fhir_server.interactions.context import FhirRequest, FhirResponse, Services


@dataclass(frozen=True)
class OperationTarget:
    """Where the operation was invoked: system (`$x`), type (`Patient/$x`) or instance."""

    rtype: str | None = None
    id: str | None = None

    @property
    def level(self) -> str:
        if self.rtype is None:
            return "system"
        return "type" if self.id is None else "instance"


Handler = Callable[[Services, FhirRequest, OperationTarget], Awaitable[FhirResponse]]


@dataclass(frozen=True)
class Operation:
    name: str  # without the '$'
    handler: Handler
    system: bool = False
    type_level: bool = False
    instance_level: bool = False
    # Types the operation applies to at type and instance level; None: every resource type.
    types: frozenset[str] | None = None
    methods: frozenset[str] = frozenset({"GET", "POST"})
    # Canonical URL of its OperationDefinition (core or profiles/), for the CapabilityStatement.
    definition: str | None = None
    # Whether the operation changes data (GET is then refused, as FHIR requires).
    affects_state: bool = False

    def applies(self, target: OperationTarget) -> bool:
        level = target.level
        if level == "system":
            return self.system
        if self.types is not None and target.rtype not in self.types:
            return False
        return self.type_level if level == "type" else self.instance_level


class OperationTable:
    def __init__(self, operations: list[Operation]) -> None:
        self._by_name: dict[str, list[Operation]] = {}
        for op in operations:
            self._by_name.setdefault(op.name, []).append(op)

    def find(self, name: str, target: OperationTarget) -> Operation | None:
        for op in self._by_name.get(name, ()):
            if op.applies(target):
                return op
        return None

    def known(self, name: str) -> bool:
        return name in self._by_name

    def all(self) -> list[Operation]:
        return [op for ops in self._by_name.values() for op in ops]
