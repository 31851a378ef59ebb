"""A lean HTTP/1.1 keep-alive client on raw asyncio, for load generation.

Why not httpx: on a 2-core machine the generator shares the CPU with the server, and an httpx
request costs several times the CPU of this one (see bench/README.md for the measurement). This
client does only what the harness needs: one connection per concurrent worker, requests written as
prepared bytes, responses framed by Content-Length (or chunked), headers parsed only on demand.
It talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

LOCALHOST = "127.0.0.1"


class HttpError(Exception):
    """The connection broke or the response could not be framed."""


@dataclass(slots=True)
class Response:
    status: int
    head: bytes  # status line and headers, as received
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called `name` (case-insensitive), or None."""
        want = name.lower().encode() + b":"
        for line in self.head.split(b"\r\n")[1:]:
            if line[: len(want)].lower() == want:
                return line[len(want) :].strip().decode("latin-1")
        return None


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._closed: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = exc or HttpError("connection closed by the server")
        self._fail(self._closed)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None or self._waiter.done():
            return
        try:
            resp = self._parse()
        except HttpError as exc:
            self._fail(exc)
            return
        if resp is not None:
            self._waiter.set_result(resp)

    def _parse(self) -> Response | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end])
        try:
            status = int(head[9:12])
        except ValueError:
            raise HttpError(f"bad status line {head[:40]!r}") from None
        length = -1
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        start = end + 4
        if chunked:
            parsed = _dechunk(buf, start)
            if parsed is None:
                return None
            body, used = parsed
            del buf[:used]
            return Response(status, head, body)
        if length < 0:
            length = 0  # no body framing: 204/304 and the like
        if len(buf) - start < length:
            return None
        body = bytes(buf[start : start + length])
        del buf[: start + length]
        return Response(status, head, body)

    async def roundtrip(self, request: bytes) -> Response:
        if self._closed is not None:
            raise HttpError(str(self._closed))
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self.transport.write(request)
        return await self._waiter


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None
            return bytes(out), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


class Connection:
    """One keep-alive connection; one request at a time; reconnects after a break."""

    def __init__(self, port: int, host: str = LOCALHOST) -> None:
        if host != LOCALHOST:
            raise ValueError("the benchmark client only talks to 127.0.0.1")
        self.host = host
        self.port = port
        self._proto: _Protocol | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Protocol, self.host, self.port)
        return proto

    def prepare(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The bytes of one request, so hot loops can build them once and resend them."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + body if body is not None else head

    async def send(self, request: bytes, timeout: float = 30.0) -> Response:
        """Send prepared request bytes. A connection the server closed is replaced first; a
        request that fails is not retried (a retried POST could create twice)."""
        if self._proto is None or self._proto._closed is not None:
            self._proto = await self._connect()
        try:
            return await asyncio.wait_for(self._proto.roundtrip(request), timeout)
        except (HttpError, TimeoutError):
            self.close()
            raise

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Response:
        return await self.send(self.prepare(method, path, body, headers), timeout)

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
