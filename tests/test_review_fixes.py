"""Regression tests for defects found in the pre-release review of the gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from proxy import tokens
from proxy.inbound import Authenticator
from proxy.store.sqlite import SqliteStore


class SlowStore(SqliteStore):
    """A real sqlite store whose token look-ups take a while (a busy store)."""

    delay = 0.3

    async def get_token(self, token_id: str) -> Any:
        await asyncio.sleep(self.delay)
        return await super().get_token(token_id)


async def test_waiters_survive_the_cancelled_leader_of_a_shared_lookup(tmp_path: Path):
    """Concurrent misses share one store look-up; when the request that started it is
    cancelled (its vendor hung up: the gateway runs with handler_cancellation), the others
    must still get an answer instead of waiting forever on a future nobody resolves."""
    store = SlowStore(str(tmp_path / "store.db"))
    await store.open()
    try:
        issued = await tokens.issue(store, "acme", ttl=None, interface="cli")
        auth = Authenticator(store, 5.0)
        vendors: dict[str, Any] = {"acme": object()}
        header = f"Bearer {issued.token}"
        leader = asyncio.ensure_future(auth.authenticate(header, vendors, ()))
        await asyncio.sleep(0.05)  # the leader is inside store.get_token
        waiter = asyncio.ensure_future(auth.authenticate(header, vendors, ()))
        await asyncio.sleep(0.05)  # the waiter awaits the leader's shared look-up
        leader.cancel()
        principal = await asyncio.wait_for(waiter, 3)
        assert principal.vendor == "acme"
        assert leader.cancelled()
    finally:
        await store.close()


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    finally:
        writer.close()
    return data


async def test_unusable_host_is_refused_before_the_district_acts(proxy, sandbox):
    """Without public_url the Host names the rewritten Links; a Host that cannot be part of a
    URL is a 400, and it must come before the request reaches the district: a DELETE the
    district carried out must not be reported to the vendor as refused."""
    from proxy.sandbox import RECORDED

    token = await proxy.token()
    before = len(sandbox.app[RECORDED])
    raw = await _raw(
        proxy.running.gateway_port,
        (
            "DELETE /app-7/ims/oneroster/v1p1/lineItems/li-review HTTP/1.1\r\n"
            "Host: bad@host\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n"
        ).encode(),
    )
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    assert len(sandbox.app[RECORDED]) == before, "the district saw a request the vendor was refused"


async def test_token_form_sent_in_pieces_is_read_whole(proxy):
    """A client (or a balancer in front) may deliver the form in several TCP segments;
    the token endpoint must read the whole body, not the first segment that arrived."""
    from tests.support import ACME_CLIENT_SECRET

    body = f"grant_type=client_credentials&client_id=acme&client_secret={ACME_CLIENT_SECRET}"
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.running.gateway_port)
    try:
        writer.write(
            (
                "POST /oauth/token HTTP/1.1\r\nHost: proxy.test\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body[:20].encode()
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(body[20:].encode())
        await writer.drain()
        data = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    assert b'"access_token"' in data


async def test_district_token_answer_in_several_chunks_is_read_whole():
    """A district token endpoint that streams its JSON (chunked, several writes) must not be
    read as the first chunk only: that makes every request of the district a 502."""
    import json

    from aiohttp import web

    from proxy.signing.oauth2 import OAuth2TokenSource

    async def token_endpoint(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        body = json.dumps(
            {"access_token": "district-token-1", "token_type": "bearer", "expires_in": 3600}
        ).encode()
        await response.write(body[:10])
        await asyncio.sleep(0.1)
        await response.write(body[10:])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/token", token_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    source = OAuth2TokenSource(f"http://127.0.0.1:{port}/token", "key", "secret", [])
    try:
        assert await source.token() == "district-token-1"
    finally:
        await source.close()
        await runner.cleanup()


async def test_check_reads_a_probe_answer_sent_in_pieces():
    """``check`` judges students_visible from the probe body; a district that streams its
    JSON in several writes must not look like one that returned no students."""
    import json

    from aiohttp import web

    from proxy import config as config_mod
    from proxy.check import run_check

    async def district(request: web.Request) -> web.StreamResponse:
        collection = request.path.rstrip("/").rsplit("/", 1)[-1]
        record = {"sourcedId": "s-1", "role": "student", "status": "active"}
        body = json.dumps({collection: [record]}).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), 8):
            await response.write(body[start : start + 8])
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", district)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    doc = {
        "server": {"upstream_timeout": "3s"},
        "store": {"url": "sqlite:///unused.db"},
        "vendors": {"acme": {}},
        "districts": {"springfield": {"base_url": f"http://127.0.0.1:{port}", "auth": "oauth1"}},
        "connections": {
            "app-7": {
                "vendor": "acme",
                "district": "springfield",
                "key": "k",
                "secret": "s",
                "scopes": ["roster-core.readonly"],
            }
        },
    }
    try:
        report = await run_check(config_mod.validate(doc, {}), "app-7")
        item = report.item("students_visible")
        assert item.status == "ok", item.detail
    finally:
        await runner.cleanup()


async def _fake_district(handler: Any) -> tuple[Any, str]:
    from aiohttp import web

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_district_stalling_mid_body_breaks_the_transfer(start_proxy, http):
    """upstream_timeout bounds each idle read; when it passes after the head went out, the
    vendor must see a broken transfer, never the head of a 504 written into the body."""
    from types import SimpleNamespace

    import aiohttp
    from aiohttp import web

    total = 200_000

    async def district(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = total
        await response.prepare(request)
        await response.write(b"x" * (total // 2))
        await asyncio.sleep(3)  # stalls past the proxy's upstream_timeout
        await response.write(b"y" * (total // 2))
        return response

    runner, base_url = await _fake_district(district)
    try:
        fake = SimpleNamespace(base_url=base_url, key="k", secret="s")
        proxy = await start_proxy(fake, upstream_timeout="500ms")
        token = await proxy.token()
        async with http.get(
            proxy.app_url("v1p1/users"), headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200
            try:
                async with asyncio.timeout(5):  # a vendor left waiting is a failure too
                    body = await resp.read()
            except aiohttp.ClientPayloadError:
                body = None
        assert body is None, f"a complete-looking body of {len(body)} bytes: {body[-200:]!r}"
    finally:
        await runner.cleanup()


async def test_non_ascii_basic_credentials_are_invalid_client_not_500(proxy):
    """SPEC: no 500. Basic credentials that are not base64 (here: raw non-ASCII bytes) are
    an unknown client (401 invalid_client), like any other wrong credentials."""
    raw = await _raw(
        proxy.running.gateway_port,
        b"POST /oauth/token HTTP/1.1\r\nHost: p\r\nAuthorization: Basic \xff\xfe\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 29\r\nConnection: close\r\n\r\ngrant_type=client_credentials",
    )
    assert raw.startswith(b"HTTP/1.1 401"), raw[:200]
    assert b'"invalid_client"' in raw


async def test_non_ascii_admin_authorization_is_401_not_500(proxy):
    """The admin token check must refuse any header value, not fail on one that is not
    ASCII: a 500 with aiohttp's plain-text page is neither the API's shape nor its answer."""
    raw = await _raw(
        proxy.running.admin_port,
        b"GET /admin/connections HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 401"), raw[:200]
