"""Injected faults (docs/sandbox.md), synthetic streaming users and the request
recorder."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from tests.sandbox.conftest import call, sign

# The sandbox's fault switches (slow answers, stalls, throttling) wait out real time: left out
# of the quick loop (`pytest -m "not slow"`, tests/conftest.py), run in CI.
pytestmark = pytest.mark.slow

USERS = "/ims/oneroster/v1p1/users"


async def test_hang_never_answers_the_matching_paths(sbx, http):
    sbx.faults.hang_paths = ["/users"]
    url, headers, _ = sign(sbx, "GET", sbx.base_url + USERS)
    with pytest.raises(asyncio.TimeoutError):
        async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=0.5)) as resp:
            await resp.read()
    assert sbx.recorded[-1].path == USERS and sbx.recorded[-1].status is None
    assert (await call(http, sbx, "/ims/oneroster/v1p1/orgs")).status == 200


async def test_reset_mid_body_breaks_the_transfer(sbx, http):
    sbx.faults.reset_mid_body = True
    sbx.faults.reset_mid_body_count = 1
    url, headers, _ = sign(sbx, "GET", sbx.base_url + USERS)
    got_head = False
    with pytest.raises(
        (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
    ):
        async with http.get(url, headers=headers) as resp:
            got_head = resp.status == 200
            assert int(resp.headers["Content-Length"]) > 1000
            await resp.read()
    assert got_head, "the head arrives; only the body breaks"
    # The count is used up: the next transfer completes.
    answer = await call(http, sbx, USERS)
    assert answer.status == 200 and len(answer.json["users"]) == 100


async def test_reset_mid_body_on_a_streamed_page(make_sandbox, http):
    sbx = await make_sandbox(synthetic_users=2000)
    sbx.faults.reset_mid_body = True
    url, headers, _ = sign(sbx, "GET", sbx.base_url + USERS + "?limit=2000")
    with pytest.raises(
        (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
    ):
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
            await resp.read()


@pytest.mark.parametrize("status", [503, 429])
async def test_busy_answers_with_retry_after_for_the_next_k(sbx, http, status):
    setattr(sbx.faults, f"status_{status}_retry_after", 2)
    setattr(sbx.faults, f"status_{status}_count", 2)
    for _ in range(2):
        answer = await call(http, sbx, USERS)
        assert answer.status == status
        assert answer.headers["Retry-After"] == "2"
        assert answer.json["imsx_codeMajor"] == "failure"
    assert (await call(http, sbx, USERS)).status == 200


async def test_close_keepalive_announces_and_closes(sbx, http):
    sbx.faults.close_keepalive = True
    answer = await call(http, sbx, USERS + "?limit=1")
    assert answer.status == 200
    assert answer.headers.get("Connection", "").lower() == "close"


async def _raw_exchange(sbx, path: str) -> tuple[bytes, bytes]:
    """Send one keep-alive request on a raw socket; return (response, what follows it)."""
    _, headers, _ = sign(sbx, "GET", sbx.base_url + path)
    host_port = sbx.base_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET {path} HTTP/1.1", f"Host: {host_port}"] + [
        f"{k}: {v}" for k, v in headers.items()
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
    length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
    await reader.readexactly(length)
    try:
        after = await asyncio.wait_for(reader.read(1), timeout=0.5)
    except TimeoutError:
        after = b"<still open>"
    writer.close()
    return head, after


async def test_drop_keepalive_closes_without_announcing(sbx):
    head, after = await _raw_exchange(sbx, USERS + "?limit=1")
    assert after == b"<still open>"
    sbx.faults.drop_keepalive = True
    head, after = await _raw_exchange(sbx, USERS + "?limit=1")
    assert b"connection: close" not in head.lower()
    assert after == b"", "the district closed the idle connection"


async def test_slow_body(sbx, http):
    sbx.faults.slow_body = 0.05
    started = time.monotonic()
    answer = await call(http, sbx, USERS + "?limit=5")
    elapsed = time.monotonic() - started
    assert answer.status == 200 and len(answer.json["users"]) == 5
    assert elapsed >= 0.05 * (len(answer.body) // 1024)


async def test_delay_head(sbx, http):
    sbx.faults.delay_head = 0.3
    started = time.monotonic()
    assert (await call(http, sbx, USERS + "?limit=1")).status == 200
    assert time.monotonic() - started >= 0.3


async def test_synthetic_users_stream(make_sandbox, http):
    sbx = await make_sandbox(synthetic_users=5000)
    answer = await call(http, sbx, USERS + "?limit=5000")
    assert answer.status == 200
    assert answer.headers["X-Total-Count"] == "5000"
    assert answer.headers.get("Transfer-Encoding") == "chunked"
    users = answer.json["users"]
    assert len(users) == 5000 and len({u["sourcedId"] for u in users}) == 5000
    page = (await call(http, sbx, USERS + "?limit=10&offset=4995")).json["users"]
    assert [u["sourcedId"] for u in page] == [u["sourcedId"] for u in users[4995:]]
    zoes = await call(http, sbx, USERS + "?limit=10000&filter=givenName%3D%27Zo%C3%AB%27")
    assert int(zoes.headers["X-Total-Count"]) == len(zoes.json["users"]) == 125
    one = await call(http, sbx, f"{USERS}/{users[7]['sourcedId']}")
    assert one.json["user"] == users[7]
    assert (await call(http, sbx, f"{USERS}/syn-user-999999999")).status == 404
    v12 = (
        await call(http, sbx, "/ims/oneroster/rostering/v1p2/users?limit=1&fields=sourcedId,roles")
    ).json
    assert set(v12["users"][0]) == {"sourcedId", "roles"}


async def test_recorder_keeps_what_the_district_received(sbx, http):
    body = json.dumps({"lineItem": {"title": "ü"}}, ensure_ascii=False).encode()
    await call(http, sbx, "/ims/oneroster/v1p1/lineItems/rec-1?x=%20y", "PUT", body=body,
               headers={"Content-Type": "application/json", "X-Custom": "one"})  # fmt: skip
    await call(http, sbx, USERS, signed=False)
    put, unsigned = sbx.recorded[-2:]
    assert put.method == "PUT" and put.path == "/ims/oneroster/v1p1/lineItems/rec-1?x=%20y"
    assert put.body == body and put.verified and put.status == 201
    assert put.header("x-custom") == ["one"]
    assert ("X-Custom", "one") in put.headers
    assert not unsigned.verified and unsigned.status == 401


async def test_recorder_stays_bounded(make_sandbox, http):
    sbx = await make_sandbox(record_limit=4)
    for _ in range(5):
        await call(http, sbx, USERS + "?limit=1")
    assert 2 <= len(sbx.recorded) <= 4
    quiet = await make_sandbox(record_limit=0)
    assert (await call(http, quiet, USERS + "?limit=1")).status == 200
    assert quiet.recorded == []
