"""Request-body parsing limits: nesting depth and duplicate keys."""

from __future__ import annotations

import pytest

from fhir_server.errors import BadRequest
from fhir_server.fhir import jsonio


def nested(levels: int, array: bool = False) -> bytes:
    if array:
        return b"[" * levels + b"]" * levels
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


@pytest.mark.parametrize("array", [False, True])
def test_depth_at_the_limit_is_accepted_one_more_is_refused(array: bool) -> None:
    assert jsonio.loads(nested(100, array), max_depth=100) is not None
    with pytest.raises(BadRequest, match="nesting deeper than 100"):
        jsonio.loads(nested(101, array), max_depth=100)


def test_large_limits_are_checked_without_recursion() -> None:
    """Limits beyond the recursive check (stored bodies are read with 10,000) must not run into
    Python's recursion limit: a body nested 900 deep is within such a limit."""
    assert jsonio.loads(nested(900), max_depth=10_000) is not None
    with pytest.raises(BadRequest, match="nesting deeper than 500"):
        jsonio.loads(nested(501), max_depth=500)


def test_deeper_than_the_parser_can_go_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        jsonio.loads(nested(100_000), max_depth=10_000)


def test_duplicate_keys_are_refused_and_own_output_reads_back() -> None:
    with pytest.raises(BadRequest, match="duplicate key 'a'"):
        jsonio.loads(b'{"a": 1, "b": {"a": 2}, "a": 3}')
    doc = jsonio.loads(b'{"v": 1.50, "e": 1.5e2, "n": [1, {"x": 6.0}]}')
    again = jsonio.loads_own(jsonio.dumps(doc))
    assert jsonio.dumps(again) == jsonio.dumps(doc) == b'{"v":1.50,"e":1.5e2,"n":[1,{"x":6.0}]}'
