"""ValueSet expansion for binding checks: pure, from the ValueSets and CodeSystems given.

`expand(url)` answers the codes of a value set as `{system: codes}`, or a reason (a string) when
that is impossible here: a filter other than `is-a`/`descendent-of` on a known hierarchy, a code
system whose concepts are not all known (LOINC, SNOMED CT as a whole), an import of an unknown
value set. A binding whose value set cannot be expanded is not checked: no false errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

JsonObj = dict[str, Any]
Codes = dict[str, frozenset[str]]

__all__ = ["Codes", "Expander", "all_codes", "contains"]


def all_codes(concepts: Iterable[JsonObj]) -> Iterable[str]:
    for c in concepts:
        code = c.get("code")
        if isinstance(code, str):
            yield code
        yield from all_codes(c.get("concept") or [])


def _descendants(concepts: Iterable[JsonObj], root: str, inside: bool = False) -> Iterable[str]:
    for c in concepts:
        code = c.get("code")
        here = inside or code == root
        if here and isinstance(code, str):
            yield code
        yield from _descendants(c.get("concept") or [], root, here)


def contains(codes: Codes, system: str | None, code: str) -> bool:
    """Whether (system, code) is in the expansion; a bare `code` (no system) matches any system."""
    if system is None:
        return any(code in cs for cs in codes.values())
    return code in codes.get(system, frozenset())


class Expander:
    """Expands value sets; `expansions` are precomputed ones (e.g. core value sets, by URL)."""

    def __init__(
        self,
        value_sets: Iterable[JsonObj] = (),
        code_systems: Iterable[JsonObj] = (),
        expansions: Mapping[str, Codes] | None = None,
    ) -> None:
        self.value_sets = {str(v.get("url")): v for v in value_sets if v.get("url")}
        self.code_systems = {str(c.get("url")): c for c in code_systems if c.get("url")}
        self.memo: dict[str, Codes | str] = dict(expansions or {})

    def expand(self, url: str, stack: tuple[str, ...] = ()) -> Codes | str:
        url = url.split("|")[0]
        if url in self.memo:
            return self.memo[url]
        if url in stack:
            return f"circular import of {url}"
        result = self._expand(url, (*stack, url))
        self.memo[url] = result
        return result

    def _expand(self, url: str, stack: tuple[str, ...]) -> Codes | str:
        vs = self.value_sets.get(url)
        if vs is None:
            return f"value set {url} is not known"
        expansion = vs.get("expansion")
        if isinstance(expansion, dict) and not vs.get("compose"):
            return _from_expansion(expansion.get("contains") or [])
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            return f"value set {url} has no compose"
        codes: dict[str, set[str]] = {}
        for inc in compose.get("include") or []:
            part = self._include(inc, stack)
            if isinstance(part, str):
                return part
            for system, cs in part.items():
                codes.setdefault(system, set()).update(cs)
        for exc in compose.get("exclude") or []:
            part = self._include(exc, stack)
            if isinstance(part, str):
                return f"exclude: {part}"
            for system, cs in part.items():
                codes.get(system, set()).difference_update(cs)
        return {s: frozenset(c) for s, c in codes.items()}

    def _include(self, inc: JsonObj, stack: tuple[str, ...]) -> Codes | str:
        selected: Codes | None = None
        system = inc.get("system")
        if isinstance(system, str):
            if inc.get("concept"):
                selected = {system: frozenset(str(c.get("code")) for c in inc["concept"])}
            else:
                found = self._system_codes(system, inc.get("filter") or [])
                if isinstance(found, str):
                    return found
                selected = found
        for imported in inc.get("valueSet") or []:
            other = self.expand(str(imported), stack)
            if isinstance(other, str):
                return other
            if selected is None:
                selected = dict(other)
            else:  # an include with a system and value sets is their intersection
                selected = {s: c & other.get(s, frozenset()) for s, c in selected.items()}
        return selected or {}

    def _system_codes(self, system: str, filters: list[JsonObj]) -> Codes | str:
        cs = self.code_systems.get(system)
        if cs is None:
            return f"code system {system} is not known"
        if cs.get("content") not in ("complete", None):
            return f"code system {system} is not complete here ({cs.get('content')})"
        concepts = cs.get("concept") or []
        found = set(all_codes(concepts))
        for f in filters:
            op, prop, value = f.get("op"), f.get("property"), str(f.get("value"))
            if prop == "concept" and op == "is-a":
                found &= set(_descendants(concepts, value))
            elif prop == "concept" and op == "descendent-of":
                found &= set(_descendants(concepts, value)) - {value}
            else:
                return f"filter {prop} {op} on {system} is not supported"
        return {system: frozenset(found)}


def _from_expansion(contains_: Iterable[JsonObj]) -> Codes:
    out: dict[str, set[str]] = {}
    stack = list(contains_)
    while stack:
        item = stack.pop()
        if isinstance(item.get("system"), str) and isinstance(item.get("code"), str):
            out.setdefault(item["system"], set()).add(item["code"])
        stack.extend(item.get("contains") or [])
    return {s: frozenset(c) for s, c in out.items()}
