"""`fhir-server load --url ... --token T` sends the token as a Bearer (the default server has auth on)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fhir_server.cli import main


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Recorder.seen.append(self.headers.get("Authorization"))
        ok = self.headers.get("Authorization") == "Bearer s3cret"
        body = b"" if ok else json.dumps({"resourceType": "OperationOutcome", "issue": []}).encode()
        self.send_response(201 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_load_sends_the_token(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"resourceType": "Patient", "id": "p1"}))
    _Recorder.seen.clear()
    assert main(["load", str(f), "--url", server_url, "--token", "s3cret"]) == 0
    assert main(["load", str(f), "--url", server_url]) == 1  # refused: 401
    monkeypatch.setenv("FHIR_SERVER_TOKEN", "s3cret")
    assert main(["load", str(f), "--url", server_url]) == 0
    assert _Recorder.seen == ["Bearer s3cret", None, "Bearer s3cret"]
