"""Validation of a resource (or a datatype value) against one profile's element tree.

Checked: cardinality (min/max, per slice too), fixed[x] (exact) and pattern[x] (contained)
values, the types of choice elements, Reference target types (targetProfile), required (error)
and extensible (warning) bindings on code/Coding/CodeableConcept/Quantity/string/uri values whose
value set the server can expand, slicing with `value`/`pattern` discriminators (open and closed),
profiles on element types (extensions above all), and invariants the FHIRPath compiler evaluates.
Every issue names its element path (`Observation.component[1].code`), as the base validation does.
Pure: everything it needs comes through `Resolver`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from fhir_server.errors import Issue
from fhir_server.fhir.profiles import invariants
from fhir_server.fhir.profiles.elements import Node, fixed_or_pattern
from fhir_server.fhir.profiles.slicing import matches, matches_pattern
from fhir_server.fhir.profiles.terminology import Codes, contains

__all__ = ["Resolver", "Validator", "matches_pattern"]

PRIMITIVES = frozenset(
    {
        *("boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary"),
        *("instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt"),
        *("positiveInt", "uuid", "xhtml"),
    }
)
QUANTITY_TYPES = frozenset({"Quantity", "Age", "Distance", "Duration", "Count", "SimpleQuantity"})
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


class Resolver(Protocol):
    def tree(self, url: str) -> tuple[str, Node] | None:
        """(type, element tree) of a known profile."""

    def profile_type(self, url: str) -> str | None:
        """The type a profile (or a core type's StructureDefinition) constrains."""

    def expansion(self, url: str) -> Codes | None:
        """The codes of a value set, or None when it cannot be expanded."""


def _choice_type(suffix: str) -> str:
    lower = suffix[:1].lower() + suffix[1:]
    return lower if lower in PRIMITIVES else suffix


def _show(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


Item = tuple[Any, str, str | None]  # value, its path, its type when the JSON key names it


class Validator:
    def __init__(self, resolver: Resolver, resource: Any) -> None:
        self.resolver = resolver
        self.resource = resource
        self.issues: list[Issue] = []
        self._depth = 0

    def add(self, severity: str, code: str, text: str, path: str) -> None:
        self.issues.append(Issue(severity, code, text, [path]))

    # --- the walk ---------------------------------------------------------------------------
    def validate(self, url: str, value: Any, path: str) -> None:
        found = self.resolver.tree(url)
        if found is None or self._depth > 20:
            return
        self._depth += 1
        try:
            _, root = found
            self.node(root, [(value, path, None)], path)
        finally:
            self._depth -= 1

    def node(self, node: Node, items: list[Item], where: str) -> None:
        elem = node.elem
        if elem is not None:
            self.cardinality(elem, len(items), where, None)
        for value, path, typ in items:
            if elem is not None:
                self.value(elem, value, path, typ)
            for child in node.children.values():
                self.node(child, _child_items(value, child.name, path), f"{path}.{child.name}")
        if node.slices:
            self.slicing(node, items, where)

    def cardinality(self, elem: dict[str, Any], n: int, where: str, slice_name: str | None) -> None:
        low, high = elem.get("min"), elem.get("max")
        what = f"slice '{slice_name}' of {where}" if slice_name else where
        if isinstance(low, int) and n < low:
            self.add(
                "error", "required", f"{what}: minimum required = {low}, but only found {n}", where
            )
        if isinstance(high, str) and high != "*" and high.isdigit() and n > int(high):
            self.add(
                "error", "structure", f"{what}: maximum allowed = {high}, but found {n}", where
            )

    def value(self, elem: dict[str, Any], value: Any, path: str, typ: str | None) -> None:
        types = [t for t in elem.get("type") or [] if isinstance(t, dict)]
        codes = [str(t.get("code")) for t in types]
        quantity_ok = typ in QUANTITY_TYPES and "Quantity" in codes
        if typ is not None and codes and typ not in codes and not quantity_ok:
            allowed = ", ".join(codes)
            self.add("error", "structure", f"Type {typ} is not allowed here ({allowed})", path)
            return
        eff = typ or (codes[0] if len(codes) == 1 else None)
        fp = fixed_or_pattern(elem)
        if fp is not None:
            kind, expected = fp
            ok = value == expected if kind == "fixed" else matches_pattern(value, expected)
            if not ok:
                self.add(
                    "error",
                    "value",
                    f"Value must be {'exactly' if kind == 'fixed' else 'like'} "
                    f"{_show(expected)}, but is {_show(value)}",
                    path,
                )
        if eff == "Reference":
            self.reference([t for t in types if t.get("code") == "Reference"], value, path)
        binding = elem.get("binding")
        if isinstance(binding, dict):
            self.binding(binding, eff or _shape_type(value), value, path, choice=typ is not None)
        for c in elem.get("constraint") or []:
            self.invariant(c, elem, eff, value, path)
        for t in types:
            if eff is None or t.get("code") == eff:
                for url in t.get("profile") or []:
                    self.validate(str(url), value, path)

    def reference(self, types: list[dict[str, Any]], value: Any, path: str) -> None:
        targets = [str(p) for t in types for p in t.get("targetProfile") or []]
        ref = value.get("reference") if isinstance(value, dict) else None
        if not targets or not isinstance(ref, str):
            return
        allowed = {self.resolver.profile_type(p) for p in targets}
        if None in allowed or "Resource" in allowed:
            return
        found = _reference_type(ref, self.resource)
        if found is not None and found not in allowed:
            names = ", ".join(sorted(a for a in allowed if a))
            self.add(
                "error", "structure", f"Reference to {found} is not allowed here ({names})", path
            )

    def binding(
        self, binding: dict[str, Any], typ: str, value: Any, path: str, *, choice: bool = False
    ) -> None:
        """A binding on a choice element is meant for the types its value set fits: vitalsigns
        binds `component.value[x]` to UCUM units, which says nothing of a valueCodeableConcept
        from another system. So on a choice element, codes from systems the value set does not
        use at all are not checked."""
        strength, url = binding.get("strength"), binding.get("valueSet")
        if strength not in ("required", "extensible") or not isinstance(url, str):
            return
        pairs = _codes(typ, value)
        if pairs is None:
            return
        expansion = self.resolver.expansion(url)
        if expansion is None:
            return
        if any(contains(expansion, s, c) for s, c in pairs):
            return
        if choice and pairs and not any(s is None or s in expansion for s, _ in pairs):
            return
        if not pairs:
            if strength == "required" and typ == "CodeableConcept":
                self.add("error", "code-invalid", f"A code from {url} is required", path)
            return
        shown = ", ".join(f"{s}|{c}" if s else c for s, c in pairs)
        if strength == "required":
            self.add("error", "code-invalid", f"{shown} is not in the value set {url}", path)
        else:
            self.add(
                "warning",
                "code-invalid",
                f"{shown} is not in the (extensible) value set {url}",
                path,
            )

    def invariant(
        self, c: dict[str, Any], elem: dict[str, Any], eff: str | None, value: Any, path: str
    ) -> None:
        key, expr = c.get("key"), c.get("expression")
        if not isinstance(expr, str) or key in invariants.SKIPPED_KEYS:
            return
        epath = str(elem.get("path") or "")
        context = epath if "." not in epath or eff in (None, "BackboneElement") else eff
        if context is None or context.endswith("[x]"):
            return
        if invariants.check(expr, context, value, self.resource) is False:
            severity = "warning" if c.get("severity") == "warning" else "error"
            human = c.get("human") or expr
            self.add(severity, "invariant", f"Constraint {key} failed: {human}", path)

    # --- slicing ----------------------------------------------------------------------------
    def slicing(self, node: Node, items: list[Item], where: str) -> None:
        slicing = (node.elem or {}).get("slicing") or {}
        discs = slicing.get("discriminator") or []
        if not discs and node.name in ("extension", "modifierExtension"):
            discs = [{"type": "value", "path": "url"}]
        rules = slicing.get("rules", "open")
        assigned: dict[str, list[Item]] = {name: [] for name in node.slices}
        for item in items:
            chosen: str | None = None
            for name, s in node.slices.items():
                hit = matches(s, discs, item[0])
                if hit is None:
                    return  # a discriminator this validator does not evaluate: slices unchecked
                if hit:
                    chosen = name
                    break
            if chosen is not None:
                assigned[chosen].append(item)
            elif rules == "closed":
                self.add("error", "structure", f"{where}: the value matches no slice", item[1])
        for name, s in node.slices.items():
            if s.elem is not None:
                self.cardinality(s.elem, len(assigned[name]), where, name)
                s = Node(
                    s.name,
                    {k: v for k, v in s.elem.items() if k not in ("min", "max")},
                    s.children,
                    s.slices,
                )
            self.node(s, assigned[name], where)


def _child_items(value: Any, name: str, path: str) -> list[Item]:
    if not isinstance(value, dict):
        return []
    keys: list[tuple[str, str | None]]
    if name.endswith("[x]"):
        prefix = name[:-3]
        keys = [
            (k, _choice_type(k[len(prefix) :]))
            for k in value
            if k.startswith(prefix) and len(k) > len(prefix) and k[len(prefix)].isupper()
        ]
    else:
        keys = [(name, None)] if name in value else []
    out: list[Item] = []
    for key, typ in keys:
        v = value[key]
        if isinstance(v, list):
            out += [(x, f"{path}.{key}[{i}]", typ) for i, x in enumerate(v)]
        else:
            out.append((v, f"{path}.{key}", typ))
    return out


def _shape_type(value: Any) -> str:
    """The coded type a value looks like, for elements whose profile does not restate the type."""
    if isinstance(value, str):
        return "code"
    if isinstance(value, dict) and ("coding" in value or "text" in value):
        return "CodeableConcept"
    if isinstance(value, dict) and "value" in value:
        return "Quantity"
    return "Coding"


def _codes(typ: str, value: Any) -> list[tuple[str | None, str]] | None:
    """(system, code) pairs of a coded value; None for types a binding check does not cover."""
    if typ in ("code", "string", "uri"):
        return [(None, value)] if isinstance(value, str) else []
    if not isinstance(value, dict):
        return None
    if typ == "Coding" or typ in QUANTITY_TYPES:
        code = value.get("code")
        if not isinstance(code, str):
            return None if typ in QUANTITY_TYPES else []
        system = value.get("system")
        return [(system if isinstance(system, str) else None, code)]
    if typ == "CodeableConcept":
        return [
            (c.get("system") if isinstance(c.get("system"), str) else None, c["code"])
            for c in value.get("coding") or []
            if isinstance(c, dict) and isinstance(c.get("code"), str)
        ]
    return None


def _reference_type(ref: str, resource: Any) -> str | None:
    if ref.startswith("#"):
        for c in resource.get("contained") or [] if isinstance(resource, dict) else []:
            if isinstance(c, dict) and c.get("id") == ref[1:]:
                rt = c.get("resourceType")
                return rt if isinstance(rt, str) else None
        return None
    parts = ref.split("?")[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2]
    return None
