"""The R4 resource types, from the table tools/gen_resource_types.py derives from the core package."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_TABLE = Path(__file__).parent / "definitions" / "resource_types.json"


@dataclass(frozen=True)
class ResourceTypeInfo:
    name: str
    r4b_model: bool
    summary: frozenset[str]  # top-level elements in _summary=true
    required: frozenset[str]  # top-level elements with min >= 1


@cache
def resource_types() -> dict[str, ResourceTypeInfo]:
    rows = json.loads(_TABLE.read_text())
    return {
        r["type"]: ResourceTypeInfo(
            r["type"], r["r4b_model"], frozenset(r["summary"]), frozenset(r["required"])
        )
        for r in rows
    }


def is_resource_type(name: str) -> bool:
    return name in resource_types()
