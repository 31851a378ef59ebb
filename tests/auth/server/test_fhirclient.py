"""A real client: PyPI `fhirclient` does a standalone launch and a refresh against a live server.
It discovers the endpoints through the CapabilityStatement's oauth-uris extension, sends PKCE S256
and aud; the authorize step (a person signing in and consenting) is driven with httpx posting the
real forms."""

from __future__ import annotations

import asyncio
import re
from html import unescape
from pathlib import Path

import httpx
from fhirclient import client as fhirclient

from tests.auth.server.live import free_port, prepare, serve

REDIRECT = "http://127.0.0.1:9/callback"


def _hidden(html: str) -> dict[str, str]:
    return {
        n: unescape(v)
        for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
    }


def _checked(html: str) -> list[tuple[str, str]]:
    return [
        ("scope", unescape(v)) for v in re.findall(r'name="scope" value="([^"]*)" checked', html)
    ]


def test_fhirclient_standalone_launch_and_refresh(tmp_path: Path, keys_file: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    app = {
        "client_id": "py-app",
        "client_name": "fhirclient app",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [REDIRECT],
    }
    asyncio.run(
        prepare(tmp_path, keys_file, origin, [app], [("alice", "pw-alice", "Patient/pat1")])
    )
    with serve(tmp_path, port) as origin:
        smart = fhirclient.FHIRClient(
            settings={
                "app_id": "py-app",
                "api_base": f"{origin}/fhir",
                "redirect_uri": REDIRECT,
                "scope": "launch/patient openid fhirUser offline_access patient/*.rs",
            }
        )
        url = smart.authorize_url
        assert url.startswith(f"{origin}/auth/authorize?")
        with httpx.Client() as browser:
            page = browser.get(url)
            assert page.status_code == 200, page.text
            form = {**_hidden(page.text), "username": "alice", "password": "pw-alice"}
            consent = browser.post(f"{origin}/auth/authorize", data=form)
            assert consent.status_code == 200, consent.text
            fields = [
                *_hidden(consent.text).items(),
                *_checked(consent.text),
                ("decision", "allow"),
            ]
            done = browser.post(
                f"{origin}/auth/authorize",
                content=httpx.QueryParams(fields).__str__(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert done.status_code == 302
            callback = done.headers["location"]
        assert callback.startswith(REDIRECT) and "code=" in callback
        smart.handle_callback(callback)
        assert smart.ready and smart.patient_id == "pat1"
        first_token = smart.server.auth.access_token
        first_refresh = smart.server.auth.refresh_token
        assert first_token and first_refresh
        patient = smart.patient
        assert patient is not None and patient.name[0].family == "Doe"
        assert smart.reauthorize()
        assert smart.server.auth.access_token != first_token
        assert smart.server.auth.refresh_token not in (None, first_refresh)  # rotated
        assert smart.patient_id == "pat1"
        # the rotated-out refresh token is refused
        r = httpx.post(
            f"{origin}/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first_refresh,
                "client_id": "py-app",
            },
        )
        assert r.status_code == 400
