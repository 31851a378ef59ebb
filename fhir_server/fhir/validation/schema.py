"""Dispatch tables compiled from the element table, one `Schema` per table, built once and cached.

A schema maps every JSON property name a table allows (choice elements expanded: `valueQuantity`,
`valueString`, ...) to a `Slot` that says everything the walker needs without further lookups:
array or single, and either a primitive checker (JSON kind, regex, range, required codes) or the
child schema. A later profile validator can compile a profile into the same shape (tighter
cardinality, fixed values, slices) and reuse the walker.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhir_server.fhir.jsonio import ExactDecimal
from fhir_server.fhir.structures import ElementDef, PrimitiveDef, Structures, structures

# Slot kinds
PRIMITIVE, XHTML, COMPLEX, RESOURCE, SKIP = range(5)
# Slot ops: kind and arity folded into one number, so the walker's hot loop branches once
PRIM, OBJ, PRIMS, OBJS, OTHER = range(5)

# A primitive check returns (issue code, message), or None when the value is fine.
Check = Callable[[Any], tuple[str, str] | None]

# Integer ranges of the three integer types (FHIR integers are 32-bit signed).
INT_RANGES = {
    "integer": (-(2**31), 2**31 - 1),
    "unsignedInt": (0, 2**31 - 1),
    "positiveInt": (1, 2**31 - 1),
}
# The core regex `(\s*([0-9a-zA-Z\+/=]){4}\s*)+` backtracks exponentially on a long failing value
# (adjacent `\s*` can split each whitespace run many ways); this one accepts the same language.
SAFE_REGEX = {"base64Binary": r"\s*(?:[0-9a-zA-Z+/=]{4}\s*)+"}
# an unescaped "(" that does not start a "(?" group (the core regexes have no "(" in classes)
_NON_CAPTURING = re.compile(r"(?<!\\)((?:\\\\)*)\((?!\?)")


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


class Slot:
    """One JSON property of a table."""

    __slots__ = ("array", "check", "child", "choice", "element", "key", "kind", "max", "op", "type")

    def __init__(self, key: str, element: ElementDef, type_name: str, kind: int) -> None:
        self.key = key
        self.element = element
        self.type = type_name
        self.kind = kind
        self.array = element.is_array
        # Only a bounded max above 1 needs a length check; 1 is "not an array", * is unbounded.
        self.max = element.max if element.max is not None and element.max > 1 else None
        self.choice = element.name if element.is_choice else None
        if kind == PRIMITIVE:
            self.op = PRIMS if self.array else PRIM
        elif kind == COMPLEX:
            self.op = OBJS if self.array else OBJ
        else:
            self.op = OTHER
        # Placeholders rather than None keep the hot loop free of None checks.
        self.check: Check = _no_check
        self.child: Schema = _NO_SCHEMA


def _no_check(v: Any) -> tuple[str, str] | None:
    return None


class Schema:
    """The compiled form of one table."""

    __slots__ = ("is_resource", "name", "required", "slots")

    def __init__(self, name: str, is_resource: bool) -> None:
        self.name = name
        self.is_resource = is_resource
        self.slots: dict[str, Slot] = {}
        # (element name, JSON keys any of which satisfies it, min count)
        self.required: tuple[tuple[str, tuple[str, ...], int], ...] = ()


_NO_SCHEMA = Schema("", False)
_DECIMALS = (Decimal, ExactDecimal)  # what jsonio.loads gives for numbers with a fraction


def string_check(p: PrimitiveDef, codes: frozenset[str] | None, value_set: str | None) -> Check:
    """The check of a string-valued primitive: a fast accept path, then `full` for the verdict."""
    regex = SAFE_REGEX.get(p.name, p.regex)
    # ASCII: the core regexes follow XML Schema, where \s is ASCII whitespace (U+00A0 is not).
    # Non-capturing groups: same language, ~30 % faster to match.
    fullmatch = (
        re.compile(_NON_CAPTURING.sub(r"\1(?:", regex), re.ASCII).fullmatch if regex else None
    )
    max_len = p.max_length or 2**62
    name = p.name

    def full(v: Any) -> tuple[str, str] | None:
        if type(v) is not str:
            return "value", f"{name} must be a JSON string, not {json_kind(v)}"
        if codes is not None:
            if v in codes:
                return None
            return "code-invalid", f"Code '{v}' is not in the required value set {value_set}"
        if not v:
            return "value", f"{name} must not be empty"
        if len(v) > max_len:
            return "value", f"{name} is longer than {max_len} characters"
        if fullmatch is None or fullmatch(v) is not None:
            return None
        shown = v if len(v) <= 40 else v[:40] + "..."
        return "value", f"Invalid {name} value '{shown}'"

    # Fast paths: str.isprintable() is a C loop that excludes every ASCII whitespace but the
    # space, so with the extra tests below it implies the type's regex for everyday values.
    if codes is not None:

        def check_code_in(v: Any) -> tuple[str, str] | None:
            return None if type(v) is str and v in codes else full(v)

        return check_code_in
    if name in ("string", "markdown"):

        def check_string(v: Any) -> tuple[str, str] | None:
            if type(v) is str and v and v.isprintable() and len(v) <= max_len:
                return None
            return full(v)

        return check_string
    if name in ("uri", "url", "canonical"):

        def check_uri(v: Any) -> tuple[str, str] | None:
            if type(v) is str and v and v.isprintable() and " " not in v:
                return None
            return full(v)

        return check_uri
    if name == "code":

        def check_plain_code(v: Any) -> tuple[str, str] | None:
            # `[^\s]+(\s[^\s]+)*`: no leading, trailing or doubled whitespace
            if (
                type(v) is str
                and v
                and v.isprintable()
                and v[0] != " "
                and v[-1] != " "
                and "  " not in v
            ):
                return None
            return full(v)

        return check_plain_code
    if fullmatch is None:  # xhtml-like: any non-empty string
        return full

    def check_regex(v: Any) -> tuple[str, str] | None:
        if type(v) is str and fullmatch(v) is not None:
            return None
        return full(v)

    return check_regex


def primitive_check(p: PrimitiveDef) -> Check:
    name = p.name
    if p.json == "boolean":

        def check_bool(v: Any) -> tuple[str, str] | None:
            if v is True or v is False:
                return None
            return "value", f"{name} must be a JSON boolean, not {json_kind(v)}"

        return check_bool
    if p.json == "integer":
        lo, hi = INT_RANGES.get(name, INT_RANGES["integer"])

        def check_int(v: Any) -> tuple[str, str] | None:
            if type(v) is int:
                return None if lo <= v <= hi else ("value", f"{name} value {v} is out of range")
            return "value", f"{name} must be a JSON integer, not {json_kind(v)}"

        return check_int
    if p.json == "number":

        def check_number(v: Any) -> tuple[str, str] | None:
            # Exact types: bool is a subclass of int. Decimal is what the server's reader
            # (parse_float=Decimal) gives for numbers with a fraction, to keep their text.
            t = type(v)
            if t is float or t is int or (t in _DECIMALS and v.is_finite()):
                return None
            return "value", f"{name} must be a JSON number, not {json_kind(v)}"

        return check_number
    return string_check(p, None, None)


class Compiler:
    """Builds schemas on demand; thread-safe, each schema published only once complete."""

    def __init__(self, defs: Structures) -> None:
        self.defs = defs
        self.cache: dict[str, Schema] = {}
        self.lock = threading.Lock()
        # xhtml is a primitive with its own rules (Narrative.div), handled by the walker
        self.checks = {p.name: primitive_check(p) for p in defs.primitives() if p.name != "xhtml"}

    def get(self, name: str) -> Schema | None:
        s = self.cache.get(name)
        if s is not None:
            return s
        with self.lock:
            pending: dict[str, Schema] = {}
            s = self._build(name, pending)
            # Recursive types (Extension, Identifier -> Reference -> Identifier) need the whole
            # closure built before any of it becomes visible to other threads.
            self.cache.update(pending)
        return s

    def _build(self, name: str, pending: dict[str, Schema]) -> Schema | None:
        found = self.cache.get(name) or pending.get(name)
        if found is not None:
            return found
        td = self.defs.type(name)
        if td is None:
            return None
        schema = Schema(name, td.kind == "resource")
        pending[name] = schema
        required: list[tuple[str, tuple[str, ...], int]] = []
        for el in td.elements.values():
            keys: list[str] = []
            for key, type_name in el.json_names().items():
                slot = self._slot(key, el, type_name, pending)
                schema.slots[key] = slot
                keys.append(key)
                if slot.kind == PRIMITIVE:
                    keys.append("_" + key)  # a required primitive may carry only extensions
            if el.min > 0 and el.max != 0:
                required.append((el.name, tuple(keys), el.min))
        if schema.is_resource:
            schema.slots["resourceType"] = Slot("resourceType", _RESOURCE_TYPE, "string", SKIP)
        schema.required = tuple(required)
        return schema

    def _slot(self, key: str, el: ElementDef, type_name: str, pending: dict[str, Schema]) -> Slot:
        if type_name == "xhtml":
            slot = Slot(key, el, type_name, XHTML)
        elif type_name == "Resource":
            slot = Slot(key, el, type_name, RESOURCE)
        elif type_name in self.checks:
            slot = Slot(key, el, type_name, PRIMITIVE)
            slot.check = self.checks[type_name]
            b = el.binding
            if type_name == "code" and b is not None and b.strength == "required":
                codes = self.defs.value_set_codes(b.value_set)
                if codes is not None:  # None: value set not expandable from the package
                    p = self.defs.primitive("code")
                    assert p is not None
                    slot.check = string_check(p, codes, b.value_set)
        else:
            slot = Slot(key, el, type_name, COMPLEX)
            child = self._build(type_name, pending)
            if child is None:
                raise LookupError(f"{el.path}: type {type_name} is not in the element table")
            slot.child = child
        return slot


_RESOURCE_TYPE = ElementDef("Resource", "resourceType", 1, 1, ("string",))


@functools.cache
def compiler() -> Compiler:
    return Compiler(structures())


def schema(name: str) -> Schema | None:
    """The compiled schema of a table (`Patient`, `Quantity`, `Element`), None if unknown."""
    return compiler().get(name)
