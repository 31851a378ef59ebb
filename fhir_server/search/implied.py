"""The implied code system of token parameters on `code` elements (`Patient.gender`).

A `code` element carries no system: its codes belong to the code system of its required value set
binding (`Patient.gender` -> http://hl7.org/fhir/administrative-gender). So
`gender=http://hl7.org/fhir/administrative-gender|male` must find what `gender=male` finds. The
index holds these codes without a system, so the parser reads `S|code` on such a parameter as
"this code, stored without a system" when S is the implied system (any other system matches
nothing, as before); `|code` keeps meaning "no system", which a `code` element has; `S|` means
"any code" (the parameter is present). No reindex is needed.
"""

from __future__ import annotations

import functools
import re

from fhir_server.fhir import structures

_PATH = re.compile(r"^[A-Za-z]+(\.[a-z][A-Za-z0-9]*)+$")


def _element(type_name: str, steps: list[str]) -> structures.ElementDef | None:
    el: structures.ElementDef | None = None
    owner = type_name
    for step in steps:
        if el is not None:  # a backbone element's children are in a table named by its path
            nested = f"{el.owner}.{el.name}"
            owner = nested if structures.type_def(nested) is not None else el.types[0]
        el = structures.element(owner, step)
        if el is None or len(el.types) != 1:
            return None
    return el


@functools.cache
def implied_system(resource_type: str, expression: str) -> str | None:
    """The one code system of every path of `expression` (for `resource_type`), when each is a
    `code` element with a required binding to a value set of a single code system; else None."""
    found: set[str] = set()
    for branch in (b.strip() for b in expression.split("|")):
        if not branch.startswith(resource_type + "."):
            continue
        if not _PATH.match(branch):
            return None
        el = _element(resource_type, branch.split(".")[1:])
        if el is None or el.types != ("code",) or el.binding is None:
            return None
        if el.binding.strength != "required":
            return None
        systems = structures.structures().value_set(el.binding.value_set)
        if systems is None or len(systems) != 1:
            return None
        found.update(systems)
    return found.pop() if len(found) == 1 else None
