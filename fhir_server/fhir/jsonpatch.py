"""RFC 6902 JSON Patch over plain JSON values (the document is copied, never changed in place)."""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.errors import BadRequest, Unprocessable


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise BadRequest(f"Invalid JSON pointer '{pointer}'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise Unprocessable(f"Invalid array index '{token}'")
    i = int(token)
    if i > len(container) or (not for_add and i == len(container)):
        raise Unprocessable(f"Array index {i} out of range")
    return i


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    if not tokens:
        raise Unprocessable("The whole document cannot be the target of this operation")
    node = doc
    for t in tokens[:-1]:
        node = _child(node, t)
    return node, tokens[-1]


def _child(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise Unprocessable(f"Path element '{token}' does not exist")
        return node[token]
    if isinstance(node, list):
        return node[_index(node, token, for_add=False)]
    raise Unprocessable(f"Path element '{token}' does not exist")


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for t in _tokens(pointer):
        node = _child(node, t)
    return node


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise Unprocessable(f"Cannot add at '{pointer}'")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict):
        if last not in parent:
            raise Unprocessable(f"Cannot remove '{pointer}': it does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, for_add=False)]
    else:
        raise Unprocessable(f"Cannot remove '{pointer}'")
    return doc


def apply_patch(document: Any, patch: Any) -> Any:
    if not isinstance(patch, list):
        raise BadRequest("A JSON Patch document must be an array of operations")
    doc = copy.deepcopy(document)
    for i, op in enumerate(patch):
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise BadRequest(f"JSON Patch operation {i} needs 'op' and 'path'")
        name, path = op.get("op"), op["path"]
        if name in ("add", "replace", "test") and "value" not in op:
            raise BadRequest(f"JSON Patch operation {i} ('{name}') needs a 'value'")
        if name == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif name == "remove":
            doc = _remove(doc, path)
        elif name == "replace":
            _get(doc, path)
            doc = (
                _add(_remove(doc, path), path, copy.deepcopy(op["value"])) if path else op["value"]
            )
        elif name in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise BadRequest(f"JSON Patch operation {i} ('{name}') needs 'from'")
            value = copy.deepcopy(_get(doc, source))
            if name == "move":
                if path.startswith(source + "/"):
                    raise Unprocessable("Cannot move a value into one of its own children")
                doc = _remove(doc, source)
            doc = _add(doc, path, value)
        elif name == "test":
            if _get(doc, path) != op["value"]:
                raise Unprocessable(f"JSON Patch test failed at '{path}'")
        else:
            raise BadRequest(f"Unknown JSON Patch operation '{name}'")
    return doc
