"""Regression tests for defects a black-box review found in enforcement: 403 answers carry
`WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750 §3.1) with a hint in the token's
own scope family; history under patient scopes fills its pages instead of filtering after paging
(an out-of-compartment delete answering 404 is in test_patient_compartment.py)."""

from __future__ import annotations

from typing import Any

from tests.auth.enforcement.conftest import VITAL, Server, grant, observation


async def test_403_carries_insufficient_scope_challenge(server: Server) -> None:
    cases = [
        (server.scopes("patient/Observation.rs"), "Condition", "patient/Condition.s"),
        (server.token("sys", grant("system/Observation.rs")), "Condition", "system/Condition.s"),
        (server.token("usr", grant("user/Observation.rs")), "Condition", "user/Condition.s"),
    ]
    for headers, path, hint in cases:
        resp = await server.http.get(path, headers=headers)
        assert resp.status_code == 403
        challenge = resp.headers["www-authenticate"]
        assert challenge.startswith("Bearer") and 'error="insufficient_scope"' in challenge
        assert hint in resp.json()["issue"][0]["diagnostics"], resp.json()
    # a write refused for a letter the token lacks
    h = server.scopes("patient/Observation.rs")
    resp = await server.http.post("Observation", json=observation("x", "p1", VITAL), headers=h)
    assert resp.status_code == 403
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]
    # the header is readable by browser apps (CORS)
    resp = await server.http.get("Condition", headers={**h, "Origin": "https://app.example"})
    exposed = resp.headers.get("access-control-expose-headers", "").lower()
    assert "www-authenticate" in exposed


async def test_history_pages_are_filled_under_patient_scopes(server: Server) -> None:
    """Newest history entries belong to another patient: a patient's first page must still
    carry the patient's entries (topped up from older pages), never 0 entries + a next link."""
    for i in range(30):
        resp = await server.http.put(
            f"Observation/other{i}",
            json=observation(f"other{i}", "p2", VITAL),
            headers=server.admin,
        )
        assert resp.status_code == 201
    h = server.scopes("patient/*.rs")
    seen: list[str] = []
    url: str | None = "_history?_count=5"
    pages = 0
    while url is not None and pages < 20:
        body: dict[str, Any] = (await server.http.get(url, headers=h)).json()
        pages += 1
        entries = body.get("entry", [])
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        assert len(entries) <= 5
        if nxt:
            assert entries, "an empty page with a next link"
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]
        url = nxt[0] if nxt else None
    assert url is None
    assert not any("other" in s or s.endswith("/p2") for s in seen)
    assert {"Patient/p1", "Observation/o1", "Observation/o2", "Observation/o4"} <= set(seen)
    body = (await server.http.get("_history?_count=3", headers=h)).json()
    assert len(body["entry"]) == 3  # the first page is full
