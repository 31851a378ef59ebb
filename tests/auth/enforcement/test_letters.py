"""Every interaction maps to a permission letter and is checked (SMART.md 1.4 v2 letters and 1.8
"Map the interaction to a letter"): with every letter but the needed one -> 403; with it -> not 403.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.auth.enforcement.conftest import VITAL, Server, observation

PATCH = [{"op": "replace", "path": "/status", "value": "amended"}]
JSON_PATCH = {"Content-Type": "application/json-patch+json"}

# (name, letter, method, path, body, extra headers)
CASES: list[tuple[str, str, str, str, Any, dict[str, str]]] = [
    ("read", "r", "GET", "Observation/o1", None, {}),
    ("vread", "r", "GET", "Observation/o1/_history/1", None, {}),
    ("history-instance", "r", "GET", "Observation/o1/_history", None, {}),
    ("search-type", "s", "GET", "Observation", None, {}),
    ("search-post", "s", "POST", "Observation/_search", None, {}),
    ("history-type", "s", "GET", "Observation/_history", None, {}),
    ("create", "c", "POST", "Observation", observation("x", "p1", VITAL), {}),
    ("update", "u", "PUT", "Observation/o1", observation("o1", "p1", VITAL), {}),
    ("update-as-create", "u", "PUT", "Observation/new1", observation("new1", "p1", VITAL), {}),
    ("patch", "u", "PATCH", "Observation/o1", PATCH, JSON_PATCH),
    ("delete", "d", "DELETE", "Observation/o1", None, {}),
]


pytestmark = pytest.mark.asyncio(loop_scope="module")


def _without(letter: str) -> str:
    return "".join(x for x in "cruds" if x != letter)


async def _call(server: Server, case: tuple[str, str, str, str, Any, dict[str, str]],
                headers: dict[str, str]) -> int:  # fmt: skip
    _, _, method, path, body, extra = case
    kwargs: dict[str, Any] = {"headers": {**headers, **extra}}
    if body is not None:
        kwargs["json"] = body
        if extra:
            kwargs["headers"]["Content-Type"] = extra["Content-Type"]
    if method == "POST" and body is None:
        kwargs["data"] = {}
    resp = await server.http.request(method, path, **kwargs)
    return resp.status_code


@pytest.mark.parametrize("context", ["patient", "user", "system"])
async def test_interaction_needs_its_letter(server: Server, context: str) -> None:
    """SMART.md 1.8: read/vread/instance _history -> r; type search (GET and POST _search) and
    type _history -> s; create -> c; update, update-as-create and patch -> u; delete -> d.
    (The cases run in order on one server: the delete comes last.)"""
    for case in CASES:
        name, letter = case[0], case[1]
        denied = server.scopes(f"{context}/Observation.{_without(letter)}")
        assert await _call(server, case, denied) == 403, name
        allowed = server.scopes(f"{context}/Observation.{letter}")
        status = await _call(server, case, allowed)
        assert status < 300, (name, status)


@pytest.mark.parametrize("scope", ["user/Observation.rs", "user/*.rs", "patient/*.cruds"])
async def test_system_level_search_and_history_need_s(shared: Server, scope: str) -> None:
    """SMART.md 1.4: `s` = "type search, type history, system search, system history"."""
    ok = shared.scopes(scope)
    assert (await shared.http.get("", headers=ok)).status_code == 200
    assert (await shared.http.get("_history", headers=ok)).status_code == 200
    no_s = shared.scopes(scope.replace(".rs", ".r").replace(".cruds", ".crud"))
    assert (await shared.http.get("", headers=no_s)).status_code == 403
    assert (await shared.http.get("_history", headers=no_s)).status_code == 403


async def test_system_search_shows_only_granted_types(shared: Server) -> None:
    """SMART.md 1.8 / 1.4 "Servers may return 200 with results left out": a search over several
    types returns only the types some scope grants `s` on."""
    h = shared.scopes("user/Condition.rs", "user/Patient.r")
    body = (await shared.http.get("", headers=h)).json()
    types = {e["resource"]["resourceType"] for e in body["entry"]}
    assert types == {"Condition"}
    resp = await shared.http.get("", params={"_type": "Condition,Observation"}, headers=h)
    assert {e["resource"]["resourceType"] for e in resp.json()["entry"]} == {"Condition"}
    resp = await shared.http.get("", params={"_type": "Encounter,Observation"}, headers=h)
    assert resp.status_code == 200 and not resp.json().get("entry")
    resp = await shared.http.get("", headers=shared.scopes("user/Condition.r"))
    assert resp.status_code == 403


async def test_refused_write_changes_nothing(server: Server) -> None:
    """SMART.md 1.4 "Servers may return ... 403 on writes": the write is not made."""
    h = server.scopes("user/Observation.rs")
    resp = await server.http.delete("Observation/o1", headers=h)
    assert resp.status_code == 403
    assert (await server.http.get("Observation/o1", headers=server.admin)).status_code == 200


async def test_conditional_writes_are_checked(server: Server) -> None:
    """SMART.md 1.8: conditional create/update/delete carry the letters of what they do, plus `s`
    for the search that finds the match (a conditional create returns the match it found)."""
    h = server.scopes("user/Observation.rs")
    resp = await server.http.delete("Observation", params={"_id": "o1"}, headers=h)
    assert resp.status_code == 403
    body = observation("o1", "p1", VITAL)
    only_u = server.scopes("user/Observation.u")
    resp = await server.http.put("Observation", params={"_id": "o1"}, json=body, headers=only_u)
    assert resp.status_code == 403
    us = server.scopes("user/Observation.us")
    resp = await server.http.put("Observation", params={"_id": "o1"}, json=body, headers=us)
    assert resp.status_code == 200
    new = observation("z", "p1", VITAL)
    for scope, status in (("user/Observation.c", 403), ("user/Observation.cs", 200)):
        h = {**server.scopes(scope), "If-None-Exist": "_id=o1"}
        resp = await server.http.post("Observation", json=new, headers=h)
        assert resp.status_code == status, scope
