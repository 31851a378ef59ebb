"""Compile a FHIRPath expression, for a known resource type, into typed branches of closures.

Types are resolved at compile time: `Observation.value` becomes one branch per choice type (JSON keys
`valueQuantity`, `valueString`, ...), each knowing the FHIR type of what it yields; `as T`/`ofType(T)`
keep the branches of type T (or a subtype); a union concatenates branches; a term rooted at another
resource type has no branches. So evaluation never looks at names or types again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from fhir_server.fhir.fhirpath import steps as st
from fhir_server.fhir.fhirpath.model import ElementModel
from fhir_server.fhir.fhirpath.parser import (
    BinOp,
    Bool,
    Call,
    EmptySet,
    FhirPathError,
    Ident,
    Index,
    Member,
    Node,
    Num,
    Str,
    This,
    TypeOp,
    Var,
)

__all__ = ["SUPPORTED_FUNCTIONS", "Branch", "compile_node"]

SUPPORTED_FUNCTIONS: Final = frozenset(
    {"where", "exists", "empty", "not", "first", "as", "ofType", "is", "extension", "hasExtension"}
)


@dataclass(frozen=True, slots=True)
class Branch:
    """Values of one FHIR type: `fn(this, resource)` evaluates them for a focus item.

    `root_key` is the JSON key of the focus the branch reads first (None: it may yield values even
    when no particular key is present, e.g. a boolean expression), so callers can skip it cheaply.
    """

    type: str
    fn: st.Fn
    root_key: str | None


@dataclass(frozen=True)
class _Partial:
    """A branch under construction: an optional start function and the steps after it."""

    type: str
    start: st.Fn | None = None
    keys: tuple[str, ...] = ()  # pending member keys, fused into one step
    steps: tuple[st.Step, ...] = ()
    root_key: str | None = None

    def member(self, key: str, type_name: str) -> _Partial:
        at_focus = self.start is None and not self.keys and not self.steps
        root = key if at_focus else self.root_key
        return _Partial(type_name, self.start, (*self.keys, key), self.steps, root)

    def then(self, step: st.Step, type_name: str | None = None) -> _Partial:
        return _Partial(
            type_name or self.type, self.start, (), (*self._flushed(), step), self.root_key
        )

    def _flushed(self) -> tuple[st.Step, ...]:
        return (*self.steps, st.fields_step(self.keys)) if self.keys else self.steps

    def linked(self) -> st.Fn:
        if self.start is None and not self.steps and len(self.keys) == 1:
            return st.field_fn(self.keys[0])
        if self.start is None and self.keys and not self.steps:
            head, rest = st.field_fn(self.keys[0]), st.fields_step(self.keys[1:])
            return st.link(head, [rest] if self.keys[1:] else [])
        return st.link(self.start, self._flushed())

    def done(self) -> Branch:
        return Branch(self.type, self.linked(), self.root_key)


def _started(type_name: str, fn: st.Fn) -> _Partial:
    return _Partial(type_name, start=fn)


class _Compiler:
    def __init__(self, model: ElementModel, resource_type: str, text: str) -> None:
        self.model = model
        self.resource_type = resource_type
        self.text = text

    def fail(self, message: str) -> FhirPathError:
        return FhirPathError(f"{message} (in {self.text!r})")

    def compile(self, node: Node, ctx: str) -> list[_Partial]:
        match node:
            case This():
                return [_Partial(ctx)]
            case Str(value):
                return [_started("string", st.const_fn([value]))]
            case Bool(value):
                return [_started("boolean", st.const_fn([value]))]
            case Num(value):
                return [
                    _started(
                        "integer" if isinstance(value, int) else "decimal", st.const_fn([value])
                    )
                ]
            case EmptySet():
                return []
            case Var(name):
                return self.variable(name)
            case Ident(name):
                return self.identifier(name, ctx)
            case Member(source, name):
                return [m for p in self.compile(source, ctx) for m in self.member(p, name)]
            case Index(source, Num(int() as index)):
                return self.positional(self.compile(source, ctx), index)
            case Index():
                raise self.fail("only integer literal indexes are supported")
            case TypeOp("as", source, type_name):
                return self.as_type(self.compile(source, ctx), type_name)
            case TypeOp(_, Call(source, "resolve", ()), type_name):
                return [self.resolve_is(source, ctx, type_name)]
            case TypeOp(_, source, type_name):
                return [self.is_type(self.compile(source, ctx), type_name)]
            case BinOp("|", left, right):
                return self.compile(left, ctx) + self.compile(right, ctx)
            case BinOp(op, left, right):
                return [self.binary(op, self.fn(left, ctx), self.fn(right, ctx))]
            case Call(source, name, args):
                return self.call(source, name, args, ctx)
        raise self.fail(f"unsupported construct {node!r}")

    def fn(self, node: Node, ctx: str) -> st.Fn:
        return st.union_fn([p.linked() for p in self.compile(node, ctx)] or [st.const_fn([])])

    def variable(self, name: str) -> list[_Partial]:
        if name in ("resource", "rootResource", "context"):
            return [_started(self.resource_type, lambda this, resource: [resource])]
        if name == "ucum":
            return [_started("string", st.const_fn(["http://unitsofmeasure.org"]))]
        raise self.fail(f"unknown variable %{name}")

    def identifier(self, name: str, ctx: str) -> list[_Partial]:
        model = self.model
        if name[:1].isupper() and (model.is_resource(name) or model.type_name(name) == name):
            if model.is_subtype(ctx, name):
                return [_Partial(ctx)]  # `Observation.code` on an Observation: the focus itself
            if model.is_resource(name) and ctx in ("Resource", "DomainResource"):
                return [_Partial(name).then(st.resource_type_step(name))]
            return []  # a term for another resource type: nothing for this one
        return self.member(_Partial(ctx), name)

    def member(self, partial: _Partial, name: str) -> list[_Partial]:
        found = self.model.children(partial.type, name)
        if found is None:
            raise self.fail(f"{partial.type} has no element {name!r}")
        return [partial.member(key, type_name) for key, type_name in found]

    def type_of(self, name: str) -> str:
        resolved = self.model.type_name(name)
        if resolved is None:
            raise self.fail(f"unknown type {name!r}")
        return resolved

    def as_type(self, partials: list[_Partial], type_name: str) -> list[_Partial]:
        wanted = self.type_of(type_name)
        out = [p for p in partials if self.model.is_subtype(p.type, wanted)]
        if self.model.is_resource(wanted):
            # Values typed only as Resource carry their type at run time: filter on resourceType.
            out += [
                p.then(st.resource_type_step(wanted), wanted)
                for p in partials
                if p.type in ("Resource", "DomainResource")
                and wanted not in ("Resource", "DomainResource")
            ]
        return out

    def is_type(self, partials: list[_Partial], type_name: str) -> _Partial:
        wanted = self.type_of(type_name)
        tests = [(p.linked(), self.model.is_subtype(p.type, wanted)) for p in partials]

        def run(this: Any, resource: Any) -> st.Items:
            found = [(item, ok) for fn, ok in tests for item in fn(this, resource)]
            return [found[0][1]] if len(found) == 1 else []

        return _started("boolean", run)

    def resolve_is(self, source: Node | None, ctx: str, type_name: str) -> _Partial:
        """`resolve() is T`: decided from the reference text, without resolving anything."""
        wanted = self.type_of(type_name)
        refs = self.fn(source, ctx) if source is not None else (lambda this, resource: [this])
        is_subtype = self.model.is_subtype

        def run(this: Any, resource: Any) -> st.Items:
            items = refs(this, resource)
            if len(items) != 1:
                return []
            found = st.referenced_type(items[0], resource)
            return [found is not None and is_subtype(found, wanted)]

        return _started("boolean", run)

    def binary(self, op: str, left: st.Fn, right: st.Fn) -> _Partial:
        if op in ("=", "!="):
            negate = op == "!="

            def compare(this: Any, resource: Any) -> st.Items:
                a, b = left(this, resource), right(this, resource)
                return [] if not a or not b else [st.equals(a, b) != negate]

            return _started("boolean", compare)
        if op not in ("and", "or"):
            raise self.fail(f"operator {op!r} is not supported")
        decisive = op == "or"  # the value that decides the result on its own

        def logic(this: Any, resource: Any) -> st.Items:
            a = st.truth(left(this, resource))
            if a is decisive:
                return [decisive]
            b = st.truth(right(this, resource))
            if b is decisive:
                return [decisive]
            return [not decisive] if a is not None and b is not None else []

        return _started("boolean", logic)

    def positional(self, partials: list[_Partial], index: int) -> list[_Partial]:
        if len(partials) == 1:
            return [partials[0].then(st.slice_step(index))]
        fns = st.positional_fns([p.linked() for p in partials], index)
        return [_started(p.type, fn) for p, fn in zip(partials, fns, strict=True)]

    def call(
        self, source: Node | None, name: str, args: tuple[Node, ...], ctx: str
    ) -> list[_Partial]:
        if name not in SUPPORTED_FUNCTIONS:
            raise self.fail(f"function {name}() is not supported")
        if (
            name == "is"
            and isinstance(source, Call)
            and source.name == "resolve"
            and not source.args
        ):
            return [self.resolve_is(source.source, ctx, self.type_argument(args))]
        partials = self.compile(source, ctx) if source is not None else [_Partial(ctx)]
        if name in ("as", "ofType", "is"):
            type_name = self.type_argument(args)
            if name == "is":
                return [self.is_type(partials, type_name)]
            return self.as_type(partials, type_name)
        if name == "where" and len(args) == 1:
            return [p.then(st.where_step(self.fn(args[0], p.type))) for p in partials]
        if name in ("exists", "empty") and len(args) <= 1:
            if args:
                partials = [p.then(st.where_step(self.fn(args[0], p.type))) for p in partials]
            return [self.exists(partials, negate=name == "empty")]
        if name == "first" and not args:
            return self.positional(partials, 0)
        if name == "not" and not args:
            inner = st.union_fn([p.linked() for p in partials] or [st.const_fn([])])
            return [_started("boolean", _negation(inner))]
        if name in ("extension", "hasExtension") and len(args) == 1 and isinstance(args[0], Str):
            with_url = [p.then(st.extension_step(args[0].value), "Extension") for p in partials]
            return with_url if name == "extension" else [self.exists(with_url, negate=False)]
        raise self.fail(f"unsupported arguments to {name}()")

    def type_argument(self, args: tuple[Node, ...]) -> str:
        match args:
            case (Ident(name),):
                return name
            case (Member(Ident(namespace), name),):
                return f"{namespace}.{name}"
        raise self.fail("expected a type name argument")

    def exists(self, partials: list[_Partial], *, negate: bool) -> _Partial:
        fns = [p.linked() for p in partials]

        def run(this: Any, resource: Any) -> st.Items:
            return [any(fn(this, resource) for fn in fns) != negate]

        return _started("boolean", run)


def _negation(inner: st.Fn) -> st.Fn:
    def run(this: Any, resource: Any) -> st.Items:
        value = st.truth(inner(this, resource))
        return [] if value is None else [not value]

    return run


def compile_node(
    node: Node, model: ElementModel, context_type: str, resource_type: str, text: str
) -> tuple[Branch, ...]:
    """Typed branches of `node` evaluated with `$this` of type `context_type`."""
    compiler = _Compiler(model, resource_type, text)
    return tuple(p.done() for p in compiler.compile(node, context_type))
