"""Inbound limits over raw sockets (docs/http-api.md statuses 408, 413, 414, 431): bodies over
``max_body`` are refused before being read whole, oversized request lines and headers get
414/431, idle and trickling clients are cut off without tying up the proxy, every refusal is
an imsx payload, never a 500."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import assert_imsx, auth, base_config

# These tests wait out real time (aiohttp's socket and body deadlines, Retry-After, district
# slowness, circuit cool-downs): they run in CI and are left out of the quick loop
# (`pytest -m "not slow"`, tests/conftest.py).
pytestmark = pytest.mark.slow


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Reply(status, headers, body)


async def read_reply(reader: asyncio.StreamReader, seconds: float) -> Reply:
    """One response with a Content-Length, without waiting for the connection to close."""
    async with asyncio.timeout(seconds):
        raw = await reader.readuntil(b"\r\n\r\n")
        reply = parse(raw)
        reply.body = await reader.readexactly(int(reply.headers["content-length"]))
    return reply


async def read_all(reader: asyncio.StreamReader, seconds: float) -> bytes:
    data = b""
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def exchange(port: int, data: bytes, seconds: float = 5.0) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return parse(await read_all(reader, seconds))
    finally:
        writer.close()


def head(path: str, token: str, *extra: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: proxy.test", f"Authorization: Bearer {token}",
             "Connection: close", *extra]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def port_of(proxy: Any) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def recorded(sandbox: Any) -> list[Any]:
    from proxy.sandbox import RECORDED

    return sandbox.app[RECORDED]


@pytest.fixture
async def limited(sandbox, start_proxy, tmp_path):
    doc = base_config(tmp_path, sandbox, max_body="10KB", client_timeout="1s")
    return await start_proxy(sandbox, doc)


async def test_request_line_over_limit_is_414(limited, sandbox):
    token = await limited.token()
    reply = await exchange(
        port_of(limited), head("/app-7/ims/oneroster/v1p1/users?filter=" + "a" * 9000, token)
    )
    assert reply.status == 414
    assert_imsx(reply.json())
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["x-request-id"]
    assert recorded(sandbox) == []


async def test_header_over_limit_is_431(limited, sandbox):
    token = await limited.token()
    reply = await exchange(
        port_of(limited), head("/app-7/ims/oneroster/v1p1/orgs", token, "X-Big: " + "b" * 17000)
    )
    assert reply.status == 431
    assert_imsx(reply.json())
    assert recorded(sandbox) == []


async def test_too_many_headers_is_431(limited):
    token = await limited.token()
    extra = [f"X-H{i}: v" for i in range(200)]
    reply = await exchange(port_of(limited), head("/app-7/ims/oneroster/v1p1/orgs", token, *extra))
    assert reply.status == 431
    assert_imsx(reply.json())


async def test_near_the_limits_still_works(limited):
    token = await limited.token()
    path = "/app-7/ims/oneroster/v1p1/orgs?x=" + "a" * 7000
    # Cookie is not forwarded (the sandbox has aiohttp's smaller default limits).
    reply = await exchange(port_of(limited), head(path, token, "Cookie: c=" + "b" * 12000))
    assert reply.status == 200


@pytest.mark.parametrize(
    "junk",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)) + b"\r\n\r\n",
        b"GET /app-7 HTTP/9.9\r\n\r\n",
        b"GET /app-7/ims/oneroster/v1p1/orgs HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /app-7/ims/oneroster/v1p1/orgs HTTP/1.1\r\n"
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
    ],
)
async def test_malformed_requests_are_400_imsx(limited, junk):
    reply = await exchange(port_of(limited), junk)
    assert reply.status == 400
    assert_imsx(reply.json())


async def test_content_length_over_max_body_is_413_before_the_body(limited, sandbox):
    token = await limited.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(limited))
    try:
        writer.write(head("/app-7/ims/oneroster/v1p1/lineItems/li-1", token,
                          "Content-Type: application/json", "Content-Length: 50000",
                          method="PUT"))  # fmt: skip
        await writer.drain()
        reply = await read_reply(reader, 2.0)  # answered without a byte of the body
    finally:
        writer.close()
    assert reply.status == 413
    assert_imsx(reply.json())
    assert recorded(sandbox) == []


def chunked(total: int, size: int = 4096) -> bytes:
    out = b""
    while total > 0:
        n = min(size, total)
        out += b"%x\r\n" % n + b"x" * n + b"\r\n"
        total -= n
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_chunked_body_over_max_body_is_413(limited, sandbox, content_type):
    """A chunked body has no length to check up front: it is counted as it passes, and refused
    once over the limit; the district never receives a complete request."""
    token = await limited.token()
    request = head("/app-7/ims/oneroster/v1p1/lineItems/li-1", token,
                   f"Content-Type: {content_type}", "Transfer-Encoding: chunked",
                   method="PUT") + chunked(40_000)  # fmt: skip
    reply = await exchange(port_of(limited), request)
    assert reply.status == 413
    assert_imsx(reply.json())
    await asyncio.sleep(0.1)
    assert [r for r in recorded(sandbox) if r.method == "PUT" and r.status is not None] == []


async def test_chunked_body_under_max_body_passes(limited, sandbox):
    token = await limited.token()
    body = json.dumps({"lineItem": {"title": "t" * 6000}}).encode()
    request = head("/app-7/ims/oneroster/v1p1/lineItems/li-1", token,
                   "Content-Type: application/json", "Transfer-Encoding: chunked",
                   method="PUT") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)  # fmt: skip
    reply = await exchange(port_of(limited), request)
    assert reply.status in (200, 201), reply.body
    assert recorded(sandbox)[-1].body == body


async def test_idle_and_trickling_heads_are_cut_off(limited, http):
    """Slowloris: connections that never finish a request head are closed after
    client_timeout (1 s here), however slowly they keep sending; others are served meanwhile."""
    port = port_of(limited)
    token = await limited.token()
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    trickler = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def trickle() -> float:
        reader, writer = trickler
        for byte in b"GET /app-7/ims/oneroster/v1p1/orgs HTTP/1.1\r\nX-Slow: " + b"s" * 100:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            if reader.at_eof():
                break
            await asyncio.sleep(0.1)
        await read_all(reader, 3.0)
        return time.monotonic() - started

    trickling = asyncio.get_running_loop().create_task(trickle())
    async with http.get(limited.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 200, "the proxy still serves others"
    for reader, writer in idle:
        assert await read_all(reader, 3.0) == b"", "an idle connection is closed silently"
        writer.close()
    assert 0.8 <= time.monotonic() - started < 2.0
    assert await trickling < 2.0
    trickler[1].close()


async def test_stalled_body_is_408_and_never_reaches_the_district(limited, sandbox):
    token = await limited.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(limited))
    try:
        writer.write(head("/app-7/ims/oneroster/v1p1/lineItems/li-1", token,
                          "Content-Type: application/json", "Content-Length: 1000",
                          method="PUT") + b'{"lineItem":')  # fmt: skip
        await writer.drain()
        started = time.monotonic()
        reply = parse(await read_all(reader, 4.0))  # then the connection closes
        waited = time.monotonic() - started
    finally:
        writer.close()
    assert reply.status == 408
    assert_imsx(reply.json())
    assert 0.9 <= waited < 2.5
    assert [r for r in recorded(sandbox) if r.method == "PUT"] == []


async def test_stalled_streamed_body_is_408(sandbox, start_proxy, tmp_path):
    """The same when the body already streams to the district (chunked, not buffered)."""
    proxy = await start_proxy(sandbox, base_config(tmp_path, sandbox, client_timeout="1s"))
    token = await proxy.token()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(proxy))
    try:
        writer.write(head("/app-7/ims/oneroster/v1p1/lineItems/li-1", token,
                          "Content-Type: application/json", "Transfer-Encoding: chunked",
                          method="PUT") + b"c\r\n{\"lineItem\":\r\n")  # fmt: skip
        await writer.drain()
        reply = parse(await read_all(reader, 4.0))
    finally:
        writer.close()
    assert reply.status == 408
    assert_imsx(reply.json())
    await asyncio.sleep(0.1)
    assert [r for r in recorded(sandbox) if r.method == "PUT" and r.status is not None] == []


async def test_slow_but_steady_body_is_accepted(limited, sandbox):
    """The deadline is on silence, not on the whole upload."""
    token = await limited.token()
    body = json.dumps({"lineItem": {"title": "slow"}}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(limited))
    try:
        writer.write(head("/app-7/ims/oneroster/v1p1/lineItems/li-1", token,
                          "Content-Type: application/json", f"Content-Length: {len(body)}",
                          method="PUT"))  # fmt: skip
        for i in range(0, len(body), len(body) // 5 + 1):
            await asyncio.sleep(0.35)  # 5 pauses: ~1.8 s in all, each under client_timeout
            writer.write(body[i : i + len(body) // 5 + 1])
            await writer.drain()
        reply = parse(await read_all(reader, 4.0))
    finally:
        writer.close()
    assert reply.status in (200, 201), reply.body
    assert recorded(sandbox)[-1].body == body


@pytest.mark.parametrize("method", ["FOO", "CONNECT", "PROPFIND"])
async def test_unknown_methods_are_403_imsx(limited, sandbox, method):
    """docs/http-api.md: an unknown method is outside every scope (403), whether or not aiohttp's
    parser knows it (FOO it refuses before any handler; CONNECT it reads as an authority)."""
    token = await limited.token()
    reply = await exchange(
        port_of(limited), head("/app-7/ims/oneroster/v1p1/users", token, method=method)
    )
    assert reply.status == 403
    assert_imsx(reply.json())
    assert method in reply.json()["imsx_description"]
    assert reply.headers["x-request-id"]
    assert recorded(sandbox) == []
