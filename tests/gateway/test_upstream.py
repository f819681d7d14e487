"""The retry policy (docs/http-api.md, on retries): only GETs are sent
again, on connect failures, resets before the head and short 429/503 pushback, with backoff,
inside ``upstream_timeout``; a PUT, POST or DELETE reaches the district at most once, even when
the district drops connections the proxy had pooled.

Faults the sandbox cannot produce (a reset right after reading a write's body, with no answer)
come from ``RawDistrict``, a plain asyncio TCP server that verifies nothing and only counts and
misbehaves on a script.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.support import ADMIN_TOKEN, assert_imsx, auth, base_config

# These tests wait out real time (aiohttp's socket and body deadlines, Retry-After, district
# slowness, circuit cool-downs): they run in CI and are left out of the quick loop
# (`pytest -m "not slow"`, tests/conftest.py).
pytestmark = pytest.mark.slow


def recorded(sandbox: Any) -> list[Any]:
    from proxy.sandbox import RECORDED

    return sandbox.app[RECORDED]


@dataclass
class RawDistrict:
    """A fake district on loopback. ``script(n, method)`` says what to do with request n
    (0-based): "ok" answers 200 and keeps the connection, "ok-then-drop" answers 200 claiming
    keep-alive and closes the socket a moment later, "reset" reads the whole request and resets
    the connection without answering."""

    script: Callable[[int, str], str]
    received: list[tuple[str, str, bytes]] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> RawDistrict:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        chunk = await reader.readexactly(size + 2)
                        body += chunk[:-2]
                        if size == 0:
                            break
                n = len(self.received)
                self.received.append((method, target, body))
                action = self.script(n, method)
                if action == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                payload = b'{"orgs": []}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
                await writer.drain()
                if action == "ok-then-drop":
                    await asyncio.sleep(0.05)
                    writer.transport.abort()
                    return
        finally:
            writer.close()

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.received]


def fake_district_doc(tmp_path: Any, base_url: str, **server: Any) -> dict[str, Any]:
    class Coordinates:
        key = "fake-key"
        secret = "fake-secret"

    Coordinates.base_url = base_url  # type: ignore[attr-defined]
    return base_config(tmp_path, Coordinates, **server)


WRITES = [
    ("PUT", "v1p1/lineItems/li-1", b'{"lineItem": {"title": "x"}}'),
    ("POST", "gradebook/v1p2/results", b'{"results": []}'),
    ("DELETE", "v1p1/lineItems/li-1", b""),
]


@pytest.mark.parametrize("get_then", ["ok", "ok-then-drop"])
@pytest.mark.parametrize(("method", "rest", "body"), WRITES)
async def test_write_reset_after_body_reaches_district_once(
    start_proxy, tmp_path, http, method, rest, body, get_then
):
    """The district reads the write and resets without answering: it may have acted on it, so
    the vendor gets 502 and the write is never sent again, whether the GET before it left a
    live pooled connection or one that the district then dropped (aiohttp by itself re-sends a
    request that fails on a reused connection)."""
    district = await RawDistrict(lambda n, m: get_then if m == "GET" else "reset").start()
    try:
        proxy = await start_proxy(None, fake_district_doc(tmp_path, district.base_url))
        token = await proxy.token()
        async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
            assert resp.status == 200
        await asyncio.sleep(0.15)  # the district has now closed the pooled connection
        async with http.request(
            method, proxy.app_url(rest), data=body or None,
            headers={**auth(token), "Content-Type": "application/json"},
        ) as resp:  # fmt: skip
            assert resp.status == 502
            assert_imsx(await resp.json())
        await asyncio.sleep(0.3)  # a (wrong) re-send would have arrived by now
        assert district.methods() == ["GET", method]
        assert district.received[1][2] == body
    finally:
        await district.close()


async def test_get_reset_before_head_is_retried(start_proxy, tmp_path, http):
    district = await RawDistrict(lambda n, m: "reset" if n == 0 else "ok").start()
    try:
        proxy = await start_proxy(None, fake_district_doc(tmp_path, district.base_url))
        token = await proxy.token()
        async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
            assert resp.status == 200
        assert district.methods() == ["GET", "GET"]
    finally:
        await district.close()


async def test_get_on_dropped_keepalive_connection_is_served(start_proxy, tmp_path, http):
    district = await RawDistrict(lambda n, m: "ok-then-drop").start()
    try:
        proxy = await start_proxy(None, fake_district_doc(tmp_path, district.base_url))
        token = await proxy.token()
        for _ in range(4):
            async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
                assert resp.status == 200
            await asyncio.sleep(0.1)
        assert district.methods() == ["GET"] * 4
    finally:
        await district.close()


def refused_url() -> tuple[socket.socket, str]:
    """A loopback port that refuses connections (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def circuit(http: aiohttp.ClientSession, proxy: Any) -> str:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.get(f"{proxy.admin_url}/admin/connections/app-7", headers=headers) as resp:
        return (await resp.json())["circuit"]


async def test_connect_failures_retry_gets_only(start_proxy, tmp_path, http):
    """Each request counts once toward the circuit breaker, however many attempts it made:
    with the threshold at 2, one GET (every one of its attempts refused) leaves the circuit
    closed and a second opens it; one PUT (one attempt) does not either, a second one does."""
    sock, url = refused_url()
    with sock:
        doc = fake_district_doc(tmp_path, url)
        reader = await start_proxy(None, doc)
        reader.services.circuits.threshold = 2
        writer = await start_proxy(None, doc)
        writer.services.circuits.threshold = 2
        token = await reader.token()

        for expected in ("closed", "open"):
            async with http.get(reader.app_url("v1p1/orgs"), headers=auth(token)) as resp:
                assert resp.status == 502
                assert_imsx(await resp.json())
            assert await circuit(http, reader) == expected

        for expected in ("closed", "open"):
            async with http.put(
                writer.app_url("v1p1/lineItems/li-1"), data=b"{}", headers=auth(token)
            ) as resp:
                assert resp.status == 502
                assert_imsx(await resp.json())
            assert await circuit(http, writer) == expected


async def test_short_retry_after_503_is_waited_out(sandbox, proxy, http):
    sandbox.faults.status_503_retry_after = 1
    sandbox.faults.status_503_count = 1
    token = await proxy.token()
    started = time.monotonic()
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 200
    assert time.monotonic() - started >= 1.0, "Retry-After is a minimum"
    assert [r.status for r in recorded(sandbox)] == [503, 200]


async def test_short_retry_after_429_is_waited_out(sandbox, proxy, http):
    sandbox.faults.status_429_retry_after = 1
    sandbox.faults.status_429_count = 2
    token = await proxy.token()
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 200
    assert [r.status for r in recorded(sandbox)] == [429, 429, 200]


async def test_long_retry_after_passes_through_at_once(sandbox, proxy, http):
    sandbox.faults.status_429_retry_after = 30
    token = await proxy.token()
    started = time.monotonic()
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "30"
        assert_imsx(await resp.json())  # the district's own payload, unchanged
    assert time.monotonic() - started < 0.5
    assert len(recorded(sandbox)) == 1


async def test_retries_stop_at_upstream_timeout(sandbox, start_proxy, tmp_path, http):
    sandbox.faults.status_503_retry_after = 1  # every request, for ever
    proxy = await start_proxy(sandbox, upstream_timeout="1500ms")
    token = await proxy.token()
    started = time.monotonic()
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 503  # the district's last answer
        assert resp.headers["Retry-After"] == "1"
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, "no wait may end past upstream_timeout"
    assert len(recorded(sandbox)) == 2  # at 0 s and after ~1 s; a third would end past 1.5 s


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        ("PUT", "v1p1/lineItems/li-9"),
        ("POST", "gradebook/v1p2/results"),
        ("DELETE", "v1p1/lineItems/li-9"),
    ],
)
async def test_writes_are_not_retried_on_503(sandbox, proxy, http, method, rest):
    sandbox.faults.status_503_retry_after = 1
    sandbox.faults.status_503_count = 1
    token = await proxy.token()
    async with http.request(
        method, proxy.app_url(rest), json={"lineItem": {}} if method != "DELETE" else None,
        headers=auth(token),
    ) as resp:  # fmt: skip
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
    assert [r.method for r in recorded(sandbox)] == [method]


def test_backoff_is_jittered_and_bounded():
    from proxy.gateway import upstream

    for attempt in (1, 2, 3, 10):
        delays = {upstream.retry_delay(attempt, None) for _ in range(50)}
        assert len(delays) > 1, "jitter"
        cap = min(upstream.BACKOFF_CAP, upstream.BACKOFF_BASE * 2**attempt)
        assert all(0 <= d <= cap for d in delays)
    assert all(1.0 <= upstream.retry_delay(1, 1.0) <= 1.2 for _ in range(50))
