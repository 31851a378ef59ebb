"""_text/_content, _list, :in/:not-in, token :above/:below, _revinclude=*, page token tampering."""

from __future__ import annotations

import httpx
import pytest

# Run on every storage engine (tests/storage/engines.py).
pytestmark = pytest.mark.all_engines

SCT = "http://snomed.info/sct"


async def _ids(client: httpx.AsyncClient, path: str, **params: str) -> set[str]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    return {
        e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    }


def _cond(id: str, code: str, text: str) -> dict[str, object]:
    return {
        "resourceType": "Condition",
        "id": id,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": SCT, "code": code}]},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>',
        },
    }


async def _load(client: httpx.AsyncClient) -> None:
    await client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    for c in (
        _cond("c1", "a", "Chronic <b>heart</b> failure"),
        _cond("c2", "b", "Lung disease"),
        _cond("c3", "c", "Heartburn after meals"),
        _cond("c4", "z", "Nothing"),
    ):
        assert (await client.put(f"Condition/{c['id']}", json=c)).status_code == 201
    cs = {
        "resourceType": "CodeSystem",
        "id": "cs",
        "url": "http://example.org/cs",
        "status": "active",
        "content": "complete",
        "concept": [
            {"code": "a", "concept": [{"code": "b", "concept": [{"code": "c"}]}]},
            {"code": "z"},
        ],
    }
    assert (await client.put("CodeSystem/cs", json=cs)).status_code == 201
    vs = {
        "resourceType": "ValueSet",
        "id": "vs",
        "url": "http://example.org/vs",
        "status": "active",
        "compose": {"include": [{"system": SCT, "concept": [{"code": "a"}, {"code": "c"}]}]},
    }
    assert (await client.put("ValueSet/vs", json=vs)).status_code == 201
    lst = {
        "resourceType": "List",
        "id": "l1",
        "status": "current",
        "mode": "working",
        "entry": [{"item": {"reference": "Condition/c2"}}, {"item": {"reference": "Condition/c4"}}],
    }
    assert (await client.put("List/l1", json=lst)).status_code == 201


async def test_text_and_content(client: httpx.AsyncClient) -> None:
    await _load(client)
    assert await _ids(client, "Condition", _text="heart") == {"c1", "c3"}
    assert await _ids(client, "Condition", _text="chronic heart") == {"c1"}
    assert await _ids(client, "Condition", _text="lung OR meals") == {"c2", "c3"}
    assert await _ids(client, "Condition", _content="failure") == {"c1"}


async def test_list(client: httpx.AsyncClient) -> None:
    await _load(client)
    assert await _ids(client, "Condition", _list="l1") == {"c2", "c4"}


async def test_in_not_in(client: httpx.AsyncClient) -> None:
    await _load(client)
    assert await _ids(client, "Condition", **{"code:in": "http://example.org/vs"}) == {"c1", "c3"}
    assert await _ids(client, "Condition", **{"code:not-in": "ValueSet/vs"}) == {"c2", "c4"}
    r = await client.get("Condition", params={"code:in": "http://example.org/unknown"})
    assert r.status_code == 400


async def test_above_below(client: httpx.AsyncClient) -> None:
    await _load(client)
    for c in ("c1", "c2", "c3"):
        res = (await client.get(f"Condition/{c}")).json()
        res["code"]["coding"][0]["system"] = "http://example.org/cs"
        await client.put(f"Condition/{c}", json=res)
    assert await _ids(client, "Condition", **{"code:below": "http://example.org/cs|b"}) == {
        "c2",
        "c3",
    }
    assert await _ids(client, "Condition", **{"code:above": "http://example.org/cs|b"}) == {
        "c1",
        "c2",
    }
    r = await client.get("Condition", params={"code:below": f"{SCT}|a"})
    assert r.status_code == 400


async def test_revinclude_star(client: httpx.AsyncClient) -> None:
    await _load(client)
    r = await client.get("Patient", params={"_id": "p1", "_revinclude": "*"})
    included = {e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "include"}
    assert included == {"c1", "c2", "c3", "c4"}


async def test_tampered_page_token(client: httpx.AsyncClient) -> None:
    await _load(client)
    body = (await client.get("Condition", params={"_count": "1"})).json()
    nxt = next(ln["url"] for ln in body["link"] if ln["relation"] == "next")
    token = nxt.split("_page=")[1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    r = await client.get("Condition", params={"_page": forged})
    assert r.status_code == 400
    r = await client.get("Observation", params={"_page": token})
    assert r.status_code == 400
