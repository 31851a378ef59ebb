"""SMART.md §2 B (7-10, 12-14), C 17 (id_token), D (refresh 18-21), E 22-28 at the authorization
server: standalone launches of a public client through the real login and consent forms."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from fhir_server.errors import Unauthorized
from tests.auth.server.conftest import (
    BASE,
    ORIGIN,
    REDIRECT,
    Env,
    auth_params,
    checkbox_scopes,
    consent,
    exchange,
    get_code,
    login,
    pkce,
    redirect_query,
)

SCOPE = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs"


@pytest.mark.parametrize("post", [False, True])
async def test_patient_standalone_launch(env: Env, post: bool) -> None:
    client, _ = await env.add_client(client_name="Test app")
    code, verifier = await get_code(env, client.client_id, SCOPE, post=post)
    r = await exchange(env, client.client_id, code, verifier)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    assert r.headers["access-control-allow-origin"] == "*"  # browser apps reach the token endpoint
    body = r.json()
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 3600
    assert set(body["scope"].split()) == set(SCOPE.split())
    assert isinstance(body["refresh_token"], str)
    assert body["patient"] == "pat1"
    assert body["need_patient_banner"] is True
    style = await env.http.get(body["smart_style_url"].removeprefix(ORIGIN))
    assert style.status_code == 200 and isinstance(style.json(), dict)
    # the resource server accepts the token and sees the grant
    assert env.services.authenticate is not None
    grant = await env.services.authenticate(f"Bearer {body['access_token']}")
    assert grant.patient == "pat1" and grant.client_id == client.client_id
    assert grant.fhir_user == "Patient/pat1" and "patient/Observation.rs" in grant.scopes
    # id_token: RS256, kid in JWKS, iss, aud=client_id, sub, fhirUser
    jwks = (await env.http.get("/auth/jwks")).json()
    header = jwt.decode(body["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert header.header["alg"] == "RS256" and header.header["kid"]
    claims = header.claims
    assert claims["iss"] == ORIGIN and claims["aud"] == client.client_id
    assert claims["sub"] == "alice" and len(claims["sub"]) < 256
    assert claims["fhirUser"] == f"{BASE}/Patient/pat1"
    assert claims["exp"] > claims["iat"]


async def test_code_is_single_use_and_bound(env: Env) -> None:
    client, _ = await env.add_client()
    other, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    wrong_redirect = await exchange(
        env, client.client_id, code, verifier, data={"redirect_uri": "https://app.example/other"}
    )
    assert wrong_redirect.status_code == 400 and wrong_redirect.json()["error"] == "invalid_grant"
    code, verifier = await get_code(env, client.client_id, SCOPE)
    stolen = await exchange(env, other.client_id, code, verifier)
    assert stolen.status_code == 400
    code, verifier = await get_code(env, client.client_id, SCOPE)
    first = await exchange(env, client.client_id, code, verifier)
    assert first.status_code == 200
    again = await exchange(env, client.client_id, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # the replay revokes what the code gave (RFC 6749 §4.1.2)
    with pytest.raises(Unauthorized):
        await env.services.authenticate(f"Bearer {first.json()['access_token']}")  # type: ignore[misc]
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": client.client_id,
            "refresh_token": first.json()["refresh_token"],
        },
    )
    assert r.status_code == 400


async def test_invalid_code_and_invalid_client(env: Env) -> None:  # §2 item 24
    client, _ = await env.add_client()
    _, verifier = await get_code(env, client.client_id, SCOPE)
    r = await exchange(env, client.client_id, "not-a-code", verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code, verifier = await get_code(env, client.client_id, SCOPE)
    r = await exchange(env, "no-such-client", code, verifier)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


@pytest.mark.parametrize("case", ["missing", "blank", "wrong", "challenge"])
async def test_invalid_pkce_verifier(env: Env, case: str) -> None:  # §2 item 23
    client, _ = await env.add_client()
    _, challenge = pkce()
    params = auth_params(client.client_id, SCOPE, challenge)
    q = redirect_query(await consent(env.http, await login(env.http, params, "alice")))
    bad = {"missing": None, "blank": "", "wrong": pkce()[0], "challenge": challenge}[case]
    r = await exchange(env, client.client_id, q["code"], bad)  # type: ignore[arg-type]
    assert r.status_code in (400, 401), r.text
    assert "access_token" not in r.json()


@pytest.mark.parametrize(
    "change",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge": None},
        {"aud": "https://evil.example/fhir"},
        {"aud": BASE + "/"},
        {"aud": None},
        {"response_type": "token"},
        {"state": None},
    ],
)
async def test_bad_authorize_requests_redirect_an_error_and_no_code(
    env: Env, change: dict[str, str | None]
) -> None:
    client, _ = await env.add_client()
    _, challenge = pkce()
    params = auth_params(client.client_id, SCOPE, challenge)
    for k, v in change.items():
        if v is None:
            params.pop(k)
        else:
            params[k] = v
    r = await env.http.get("/auth/authorize", params=params)
    q = redirect_query(r)
    assert "code" not in q and q["error"]
    if "state" in params:
        assert q["state"] == params["state"]


async def test_unknown_client_or_redirect_uri_never_redirects(env: Env) -> None:
    client, _ = await env.add_client()
    _, challenge = pkce()
    for change in (
        {"client_id": "nope"},
        {"redirect_uri": REDIRECT + "/evil"},
        {"redirect_uri": "https://app.example/"},
    ):
        params = {**auth_params(client.client_id, SCOPE, challenge), **change}
        r = await env.http.get("/auth/authorize", params=params)
        assert r.status_code == 400 and "location" not in r.headers


async def test_deny_redirects_access_denied(env: Env) -> None:
    client, _ = await env.add_client()
    _, challenge = pkce()
    params = auth_params(client.client_id, SCOPE, challenge)
    page = await login(env.http, params, "alice")
    q = redirect_query(await consent(env.http, page, decision="deny"))
    assert q == {
        "error": "access_denied",
        "error_description": q["error_description"],
        "state": params["state"],
    }


async def test_limited_scope_consent(env: Env) -> None:  # §2 item 26
    client, _ = await env.add_client()
    code, verifier = await get_code(
        env, client.client_id, SCOPE, scopes=["launch/patient", "patient/Patient.rs"]
    )
    body = (await exchange(env, client.client_id, code, verifier)).json()
    assert body["scope"] == "launch/patient patient/Patient.rs"
    assert "refresh_token" not in body and "id_token" not in body
    assert body["patient"] == "pat1"


async def test_consent_page_offers_granular_choices_and_offline_access(env: Env) -> None:  # 27
    client, _ = await env.add_client()
    _, challenge = pkce()
    scope = "launch/patient offline_access patient/Observation.rs patient/Condition.rs patient/Patient.rs"
    page = await login(env.http, auth_params(client.client_id, scope, challenge), "alice")
    assert checkbox_scopes(page.text) == scope.split()
    offered = checkbox_scopes(page.text, checked_only=False)
    lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    problem = "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"
    assert lab in offered and problem in offered
    assert "offline_access" in page.text and "refresh token" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    resp = await consent(
        env.http, page, ["launch/patient", "patient/Patient.rs", lab, problem, "patient/Evil.cruds"]
    )
    code = redirect_query(resp)["code"]
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client.client_id,
            "code_verifier": "x" * 43,
        },
    )
    assert r.status_code == 400  # wrong verifier, but the grant was built; check via a fresh run
    code, verifier = await get_code(
        env,
        client.client_id,
        scope,
        scopes=["launch/patient", "patient/Patient.rs", lab, "patient/Evil.cruds"],
    )
    body = (await exchange(env, client.client_id, code, verifier)).json()
    assert body["scope"].split() == ["launch/patient", "patient/Patient.rs", lab]


async def test_v1_scopes_are_accepted(env: Env) -> None:  # §2 item 28
    client, _ = await env.add_client()
    code, verifier = await get_code(
        env, client.client_id, "launch/patient patient/*.read openid fhirUser"
    )
    body = (await exchange(env, client.client_id, code, verifier)).json()
    assert "patient/*.read" in body["scope"].split() and body["patient"] == "pat1"


async def test_practitioner_standalone_gets_a_patient_picker(env: Env) -> None:
    client, _ = await env.add_client()
    verifier, challenge = pkce()
    scope = "launch/patient patient/Patient.rs user/Practitioner.rs openid fhirUser"
    params = auth_params(client.client_id, scope, challenge)
    page = await login(env.http, params, "drbob")
    assert '<select name="patient"' in page.text
    assert 'value="pat1"' in page.text and "Jane Doe" in page.text
    bad = await consent(env.http, page, patient="nope")
    assert bad.status_code == 400 and "existing patient" in bad.text
    q = redirect_query(await consent(env.http, bad, patient="pat2"))
    body = (await exchange(env, client.client_id, q["code"], verifier)).json()
    assert body["patient"] == "pat2"
    grant = await env.services.authenticate(f"Bearer {body['access_token']}")  # type: ignore[misc]
    assert grant.fhir_user == "Practitioner/doc1" and grant.subject == "drbob"


async def test_patient_user_gets_no_user_scopes(env: Env) -> None:
    client, _ = await env.add_client()
    _, challenge = pkce()
    page = await login(
        env.http, auth_params(client.client_id, "patient/*.rs user/*.cruds", challenge), "alice"
    )
    assert checkbox_scopes(page.text) == ["patient/*.rs"]


async def test_registered_scopes_limit_the_offer(env: Env) -> None:
    client, _ = await env.add_client(scope="launch/patient patient/Observation.rs openid fhirUser")
    _, challenge = pkce()
    page = await login(
        env.http,
        auth_params(
            client.client_id,
            "launch/patient patient/*.cruds patient/Observation.r openid",
            challenge,
        ),
        "alice",
    )
    # patient/*.cruds is narrowed to what the registration covers (identity scopes always pass)
    assert checkbox_scopes(page.text) == [
        "launch/patient",
        "patient/Observation.rs",
        "patient/Observation.r",
        "openid",
    ]


async def test_refresh_rotation_and_reuse(env: Env) -> None:  # §2 D 18-21, pitfall 4
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    first = (await exchange(env, client.client_id, code, verifier)).json()

    async def refresh(token: str, **extra: str) -> tuple[int, dict[str, object]]:
        r = await env.http.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": client.client_id,
                **extra,
            },
        )
        if r.status_code == 200:
            assert r.headers["cache-control"] == "no-store"
        return r.status_code, r.json()

    status, second = await refresh(str(first["refresh_token"]))
    assert status == 200 and set(str(second["scope"]).split()) == set(SCOPE.split())
    assert second["patient"] == "pat1" and isinstance(second["expires_in"], int)
    assert second["refresh_token"] != first["refresh_token"]
    # a broader scope is refused and does not use the token up
    status, err = await refresh(str(second["refresh_token"]), scope=SCOPE + " patient/*.cruds")
    assert status == 400 and err["error"] == "invalid_scope"
    status, third = await refresh(
        str(second["refresh_token"]), scope="patient/Patient.rs offline_access"
    )
    assert status == 200 and third["scope"] == "offline_access patient/Patient.rs"
    status, _ = await refresh("garbage")
    assert status in (400, 401)
    live = f"Bearer {third['access_token']}"
    assert (await env.services.authenticate(live)).scopes  # type: ignore[misc]
    # reuse of a rotated token revokes the whole grant, current access tokens included
    status, err = await refresh(str(first["refresh_token"]))
    assert status == 400 and err["error"] == "invalid_grant"
    with pytest.raises(Unauthorized):
        await env.services.authenticate(live)  # type: ignore[misc]
    status, _ = await refresh(str(third["refresh_token"]))
    assert status == 400


async def test_refresh_token_bound_to_client(env: Env) -> None:
    client, _ = await env.add_client()
    other, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    first = (await exchange(env, client.client_id, code, verifier)).json()
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": other.client_id,
        },
    )
    assert r.status_code == 400


async def test_revocation(env: Env) -> None:  # §2 item 25
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    body = (await exchange(env, client.client_id, code, verifier)).json()
    r = await env.http.post(
        "/auth/revoke", data={"token": body["access_token"], "client_id": client.client_id}
    )
    assert r.status_code == 200
    with pytest.raises(Unauthorized) as info:
        await env.services.authenticate(f"Bearer {body['access_token']}")  # type: ignore[misc]
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
    r = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": client.client_id,
        },
    )
    assert r.status_code in (400, 401)
    # revoking an unknown token is not an error (RFC 7009)
    r = await env.http.post(
        "/auth/revoke", data={"token": "whatever", "client_id": client.client_id}
    )
    assert r.status_code == 200


async def test_revoking_the_refresh_token_ends_the_grant(env: Env) -> None:
    client, _ = await env.add_client()
    code, verifier = await get_code(env, client.client_id, SCOPE)
    body = (await exchange(env, client.client_id, code, verifier)).json()
    r = await env.http.post(
        "/auth/revoke",
        data={
            "token": body["refresh_token"],
            "client_id": client.client_id,
            "token_type_hint": "refresh_token",
        },
    )
    assert r.status_code == 200
    with pytest.raises(Unauthorized):
        await env.services.authenticate(f"Bearer {body['access_token']}")  # type: ignore[misc]
