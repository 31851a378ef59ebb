"""A browser launch: a small app using npm `fhirclient` (tests/auth/browser/app) in headless
Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium offline) signs in through the
real login page, unticks a scope on the real consent page, receives its token, and then reads its
patient and searches its observations from the FHIR API cross-origin (CORS preflight included).

Skipped, with the reason, when Chromium, chromedriver, Selenium or npm is missing or the npm registry
cannot be reached (`apt-get install -y chromium chromium-driver npm`; the test fetches fhirclient's
browser build itself with `npm pack`, version from package.json, into the git-ignored node_modules/)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.auth.server.live import free_port, prepare, serve

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "node_modules" / "fhirclient" / "build" / "fhir-client.js"
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
NPM_TIMEOUT = 120


def _fhirclient_version() -> str:
    package = json.loads((HERE / "package.json").read_text())
    return str(package["dependencies"]["fhirclient"])


def _bundle() -> tuple[Path | None, str]:
    """npm fhirclient's self-contained browser build (`build/fhir-client.js`), or None and why.

    Only the package's own tarball is fetched (`npm pack`, a second or two; no dependency tree),
    into node_modules/ (git-ignored), once; without npm or registry the test skips."""
    if BUNDLE.exists():
        return BUNDLE, ""
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm is not installed (apt-get install npm), so npm fhirclient is missing"
    spec = f"fhirclient@{_fhirclient_version()}"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [npm, "pack", spec, "--silent", "--prefer-offline", "--no-audit", "--no-fund",
               "--fetch-retries=1", "--fetch-timeout=20000"]  # fmt: skip
        try:
            proc = subprocess.run(cmd, cwd=tmp, timeout=NPM_TIMEOUT, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return None, f"npm pack {spec}: no answer from the npm registry in {NPM_TIMEOUT} s"
        tarballs = sorted(Path(tmp).glob("fhirclient-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no tarball"]
            return None, f"npm pack {spec} failed (npm registry unreachable?): {why[0]}"
        try:
            with tarfile.open(tarballs[0]) as tar:
                member = tar.extractfile("package/build/fhir-client.js")
                assert member is not None
                data = member.read()
        except (KeyError, AssertionError, tarfile.TarError) as err:
            return None, f"{spec}: no usable build/fhir-client.js ({err!r})"
    BUNDLE.parent.mkdir(parents=True, exist_ok=True)
    partial = BUNDLE.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(BUNDLE)
    return BUNDLE, ""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _static(folder: Path, port: int) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_npm_fhirclient_app_in_headless_chromium(tmp_path: Path, keys_file: Path) -> None:
    if not CHROMIUM or not DRIVER:
        pytest.skip(
            "headless Chromium test needs Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; .ci/run tries to)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs the selenium package")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bundle, why = _bundle()
    if bundle is None:
        pytest.skip(why)
    site = tmp_path / "site"
    shutil.copytree(HERE / "app", site)
    shutil.copy(bundle, site / "fhir-client.js")
    app_port, port = free_port(), free_port()
    app_origin = f"http://127.0.0.1:{app_port}"
    app = {
        "client_id": "browser-app",
        "client_name": "Browser app",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [f"{app_origin}/index.html"],
    }
    asyncio.run(
        prepare(
            tmp_path,
            keys_file,
            f"http://127.0.0.1:{port}",
            [app],
            [("alice", "pw-alice", "Patient/pat1")],
        )
    )
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(arg)
    with serve(tmp_path, port) as origin, _static(site, app_port):
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            wait = WebDriverWait(driver, 30)
            driver.get(f"{app_origin}/launch.html?iss={quote(origin + '/fhir', safe='')}")
            wait.until(lambda d: d.find_elements(By.NAME, "username"))
            assert driver.current_url.startswith(f"{origin}/auth/authorize")
            driver.find_element(By.NAME, "username").send_keys("alice")
            driver.find_element(By.NAME, "password").send_keys("pw-alice")
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[value=allow]"))
            offline = driver.find_element(
                By.CSS_SELECTOR, "input[name=scope][value=offline_access]"
            )
            assert offline.is_selected()
            offline.click()  # the user declines offline access
            driver.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
            wait.until(
                lambda d: (
                    d.find_element(By.ID, "out").text
                    if d.current_url.startswith(app_origin + "/index.html")
                    else False
                )
            )
            text = driver.find_element(By.ID, "out").text
            assert not text.startswith("ERROR"), text
            result = json.loads(text)
            assert result["patient"] == "pat1"
            assert result["user"] == "Patient/pat1"
            assert "offline_access" not in result["scope"].split() and result["refresh"] is False
            assert "patient/*.rs" in result["scope"].split() and result["banner"] is True
            # The app then read its patient and searched its observations from the FHIR API,
            # cross-origin with the bearer token (CORS, fhir_server/api/cors.py).
            assert result["read"] == "Patient/pat1"
            assert result["observations"] == ["obs1"]
            assert driver.find_element(By.ID, "patient").text == "Patient/pat1 Doe"
        finally:
            driver.quit()
