"""The proxy against a misbehaving district (docs/http-api.md, 502/504), using the
sandbox's injected faults: a district that hangs, resets mid-body, answers 503 with Retry-After,
or closes keep-alive connections between requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support import assert_imsx, auth, base_config

# These tests wait out real time (aiohttp's socket and body deadlines, Retry-After, district
# slowness, circuit cool-downs): they run in CI and are left out of the quick loop
# (`pytest -m "not slow"`, tests/conftest.py).
pytestmark = pytest.mark.slow


def recorded(sandbox: Any) -> list[Any]:
    from proxy.sandbox import RECORDED

    return sandbox.app[RECORDED]


async def test_hanging_district_is_504_in_time(sandbox, start_proxy, http):
    sandbox.faults.hang_paths = ["users"]
    proxy = await start_proxy(sandbox, upstream_timeout="700ms")
    token = await proxy.token()
    started = time.monotonic()
    async with http.get(proxy.app_url("v1p1/users"), headers=auth(token)) as resp:
        assert resp.status == 504
        assert_imsx(await resp.json())
    assert 0.6 <= time.monotonic() - started < 1.5
    # Other paths of the same district still work.
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 200


async def test_slow_body_is_not_a_timeout(sandbox, start_proxy, http):
    """upstream_timeout bounds each idle read, not the whole transfer."""
    sandbox.faults.slow_body = 0.1
    proxy = await start_proxy(sandbox, upstream_timeout="500ms")
    token = await proxy.token()
    started = time.monotonic()
    async with http.get(proxy.app_url("v1p1/users?limit=50"), headers=auth(token)) as resp:
        assert resp.status == 200
        body = await resp.read()
    assert time.monotonic() - started > 0.5, "the body took longer than upstream_timeout"
    assert len(body) > 5 * 1024 and body.endswith(b"]}")


async def raw_get(port: int, path: str, token: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: proxy.test\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    data = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return data


def complete(raw: bytes) -> tuple[int, bool]:
    """The status, and whether the body arrived whole by HTTP/1.1 framing."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    status = int(lines[0].split()[1])
    if "content-length" in headers:
        return status, len(body) >= int(headers["content-length"])
    if headers.get("transfer-encoding") == "chunked":
        rest = body
        while True:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                return status, False
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return status, rest.startswith(b"\r\n")
            if len(rest) < size + 2:
                return status, False
            rest = rest[size + 2 :]
    return status, True  # read to close: cannot tell (the proxy never answers like this)


@pytest.mark.parametrize("resource", ["users", "orgs/{id}"])
async def test_reset_mid_body_is_a_broken_transfer(sandbox, proxy, http, resource):
    """``users`` is streamed by the district (chunked), a single org is a small sized body:
    either way the vendor must never see a complete 200."""
    token = await proxy.token()
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        org = (await resp.json())["orgs"][0]["sourcedId"]
    path = f"/app-7/ims/oneroster/v1p1/{resource.format(id=org)}"
    port = int(proxy.url.rsplit(":", 1)[1])

    status, whole = complete(await raw_get(port, path, token))
    assert (status, whole) == (200, True), "the same request without the fault is complete"

    sandbox.faults.reset_mid_body = True
    sandbox.faults.reset_mid_body_count = 1
    status, whole = complete(await raw_get(port, path, token))
    # A body the proxy streams breaks off after the 200 head; one small enough to be read
    # before the head is sent becomes a 502. Never a complete 200.
    assert (status, whole) in ((200, False), (502, True))
    assert sandbox.faults.reset_mid_body_count == 0
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 200  # the proxy is fine afterwards


async def test_503_retry_after_get_retried_put_not(sandbox, proxy, http):
    token = await proxy.token()
    sandbox.faults.status_503_retry_after = 1
    sandbox.faults.status_503_count = 2
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 200
    assert [r.status for r in recorded(sandbox)] == [503, 503, 200]

    sandbox.faults.status_503_count = 1
    async with http.put(
        proxy.app_url("v1p1/lineItems/li-faults"), json={"lineItem": {"title": "x"}},
        headers=auth(token),
    ) as resp:  # fmt: skip
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert_imsx(await resp.json())  # the district's payload, passed through
    assert [r.method for r in recorded(sandbox)][3:] == ["PUT"]
    async with http.put(
        proxy.app_url("v1p1/lineItems/li-faults"), json={"lineItem": {"title": "x"}},
        headers=auth(token),
    ) as resp:  # fmt: skip
        assert resp.status in (200, 201)  # the vendor's own retry, once the fault is over
    assert [r.method for r in recorded(sandbox)][3:] == ["PUT", "PUT"]


@pytest.mark.parametrize("fault", ["close_keepalive", "drop_keepalive"])
async def test_district_closing_keepalive_connections(sandbox, proxy, http, fault):
    """Announced (``Connection: close``) or silent closes between requests: reads keep working
    and no request, read or write, reaches the district twice."""
    setattr(sandbox.faults, fault, True)
    token = await proxy.token()
    for i in range(6):
        async with http.get(proxy.app_url(f"v1p1/orgs?offset={i}"), headers=auth(token)) as resp:
            assert resp.status == 200
        await asyncio.sleep(0.02)  # let the district's close land
    for i in range(3):
        async with http.put(
            proxy.app_url(f"v1p1/lineItems/li-ka-{i}"), json={"lineItem": {"title": "x"}},
            headers=auth(token),
        ) as resp:  # fmt: skip
            assert resp.status in (200, 201)
        await asyncio.sleep(0.02)
    paths = [r.path for r in recorded(sandbox)]
    assert len(paths) == len(set(paths)) == 9


async def test_faults_leave_no_slot_held(sandbox, start_proxy, tmp_path, http):
    """Hangs, resets and 503s end with the district's slot given back."""
    doc = base_config(tmp_path, sandbox, upstream_timeout="300ms")
    doc["districts"]["springfield"].update(max_connections=1, max_wait="2s")
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    sandbox.faults.hang_paths = ["users"]
    async with http.get(proxy.app_url("v1p1/users"), headers=auth(token)) as resp:
        assert resp.status == 504
    sandbox.faults.hang_paths = []
    sandbox.faults.reset_mid_body = True
    sandbox.faults.reset_mid_body_count = 1
    port = int(proxy.url.rsplit(":", 1)[1])
    assert complete(await raw_get(port, "/app-7/ims/oneroster/v1p1/users", token)) == (200, False)
    for _ in range(3):
        async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
            assert resp.status == 200
