"""Tokenizer and precedence-climbing parser for the FHIRPath subset used by search parameters.

Grammar covered (everything else is rejected with a FhirPathError naming the construct):
literals ('string', true, false, numbers, {}), identifiers (plain or `quoted`), %variables, $this,
member access `a.b`, calls `f(args)` / `a.f(args)`, indexers `a[0]`, and the operators
`is` / `as` (type tests), `|` (union), `=` / `!=`, `and`, `or`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BinOp",
    "Bool",
    "Call",
    "EmptySet",
    "FhirPathError",
    "Ident",
    "Index",
    "Member",
    "Node",
    "Num",
    "Str",
    "This",
    "TypeOp",
    "Var",
    "parse",
]


class FhirPathError(ValueError):
    """An expression outside the supported FHIRPath subset, or malformed."""


@dataclass(frozen=True)
class Ident:
    name: str


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Bool:
    value: bool


@dataclass(frozen=True)
class Num:
    value: int | float


@dataclass(frozen=True)
class EmptySet:
    pass


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class This:
    pass


@dataclass(frozen=True)
class Member:
    source: Node
    name: str


@dataclass(frozen=True)
class Call:
    source: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Index:
    source: Node
    index: Node


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class TypeOp:
    op: str  # "is" | "as"
    source: Node
    type_name: str


Node = Ident | Str | Bool | Num | EmptySet | Var | This | Member | Call | Index | BinOp | TypeOp

_TOKEN: Final = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<quoted>`(?:[^`\\]|\\.)*`)
    | (?P<num>\d+(?:\.\d+)?)
    | (?P<var>%(?:[A-Za-z_]\w*|'(?:[^'\\]|\\.)*'|`[^`]*`))
    | (?P<special>\$\w+)
    | (?P<date>@\S+)
    | (?P<ident>[A-Za-z_]\w*)
    | (?P<op>!=|!~|<=|>=|[=~<>|&+\-*/.()\[\],{}])
    )""",
    re.VERBOSE | re.ASCII,
)
_ESCAPES: Final = {"n": "\n", "r": "\r", "t": "\t", "f": "\f"}
# Binding strength of the binary operators the compiler implements (higher binds tighter).
_PRECEDENCE: Final = {"or": 1, "and": 2, "=": 3, "!=": 3, "|": 4, "is": 5, "as": 5}
_UNSUPPORTED_OPS: Final = {
    "xor", "implies", "in", "contains", "div", "mod",
    "~", "!~", "<", ">", "<=", ">=", "&", "+", "-", "*", "/",
}  # fmt: skip


def _unescape(body: str) -> str:
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _replace_escape, body)


def _replace_escape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN.match(stripped, pos)
        if match is None or match.end() == pos:
            raise FhirPathError(f"cannot read FHIRPath {text!r} at offset {pos}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "date":
            raise FhirPathError(f"date/time literals ({value}) are not supported in {text!r}")
        tokens.append((kind, value))
        pos = match.end()
    tokens.append(("end", ""))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        kind, got = self.take()
        if got != value or kind in ("str", "quoted"):
            raise FhirPathError(f"expected {value!r} but found {got or 'end'!r} in {self.text!r}")

    def binary_op(self) -> str | None:
        kind, value = self.peek()
        if kind in ("op", "ident") and value in _UNSUPPORTED_OPS:
            raise FhirPathError(f"operator {value!r} is not supported (in {self.text!r})")
        return value if kind in ("op", "ident") and value in _PRECEDENCE else None

    def expression(self, min_prec: int = 1) -> Node:
        left = self.postfix()
        while (op := self.binary_op()) is not None and _PRECEDENCE[op] >= min_prec:
            self.take()
            if op in ("is", "as"):
                left = TypeOp(op, left, self.type_name())
            else:
                left = BinOp(op, left, self.expression(_PRECEDENCE[op] + 1))
        return left

    def type_name(self) -> str:
        parts = [self.identifier()]
        while self.peek() == ("op", "."):
            self.take()
            parts.append(self.identifier())
        return ".".join(parts)

    def identifier(self) -> str:
        kind, value = self.take()
        if kind == "ident":
            return value
        if kind == "quoted":
            return _unescape(value[1:-1])
        raise FhirPathError(f"expected a name but found {value or 'end'!r} in {self.text!r}")

    def postfix(self) -> Node:
        node = self.term()
        while True:
            kind, value = self.peek()
            if (kind, value) == ("op", "."):
                self.take()
                name = self.identifier()
                node = Call(node, name, self.arguments()) if self.at("(") else Member(node, name)
            elif (kind, value) == ("op", "["):
                self.take()
                index = self.expression()
                self.expect("]")
                node = Index(node, index)
            else:
                return node

    def at(self, value: str) -> bool:
        return self.peek() == ("op", value)

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        args: list[Node] = []
        while not self.at(")"):
            args.append(self.expression())
            if not self.at(")"):
                self.expect(",")
        self.take()
        return tuple(args)

    def term(self) -> Node:
        kind, value = self.peek()
        if kind == "op" and value == "(":
            self.take()
            node = self.expression()
            self.expect(")")
            return node
        if kind == "op" and value == "{":
            self.take()
            self.expect("}")
            return EmptySet()
        self.take()
        if kind == "str":
            return Str(_unescape(value[1:-1]))
        if kind == "num":
            return Num(float(value) if "." in value else int(value))
        if kind == "var":
            name = value[1:]
            return Var(_unescape(name[1:-1]) if name[:1] in ("'", "`") else name)
        if kind == "special":
            if value != "$this":
                raise FhirPathError(f"{value} is not supported (in {self.text!r})")
            return This()
        if kind in ("ident", "quoted"):
            name = value if kind == "ident" else _unescape(value[1:-1])
            if kind == "ident" and name in ("true", "false"):
                return Bool(name == "true")
            return Call(None, name, self.arguments()) if self.at("(") else Ident(name)
        raise FhirPathError(f"unexpected {value or 'end of expression'!r} in {self.text!r}")


def parse(text: str) -> Node:
    """Parse one FHIRPath expression; raises FhirPathError outside the supported subset."""
    parser = _Parser(text)
    node = parser.expression()
    kind, value = parser.peek()
    if kind != "end":
        raise FhirPathError(f"unexpected {value!r} after a complete expression in {text!r}")
    return node
