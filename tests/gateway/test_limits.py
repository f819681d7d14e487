"""Limits that protect districts (docs/configuration.md, ``max_connections`` and ``rate_limit``):
per-district concurrency cap with a fair queue and ``max_wait``, vendor and district rate limits,
shared between processes through the store (sqlite file and redis), against the real sandbox
district."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.redis_server import RedisServer, require_redis_server
from tests.support import ACME_CLIENT_SECRET, assert_imsx, auth, base_config


def recorded(sandbox: Any) -> list[Any]:
    from proxy.sandbox import RECORDED

    return sandbox.app[RECORDED]


class InFlight:
    """Samples how many requests the sandbox is handling at once (received, not yet answered)."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            busy = sum(1 for r in recorded(self.sandbox) if r.status is None)
            self.peak = max(self.peak, busy)
            await asyncio.sleep(0.005)

    async def __aenter__(self) -> InFlight:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def capped(tmp_path: Any, sandbox: Any, **district: Any) -> dict[str, Any]:
    doc = base_config(tmp_path, sandbox)
    doc["districts"]["springfield"].update(district)
    return doc


async def fetch(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, Any, Any]:
    async with http.get(url, headers=auth(token)) as resp:
        body = await resp.read()
        data = None
        if resp.content_type == "application/json":
            data = await resp.json()
        return resp.status, data or body, resp.headers


async def test_concurrency_cap_holds_and_everyone_is_served(sandbox, start_proxy, tmp_path, http):
    sandbox.faults.delay_head = 0.25
    proxy = await start_proxy(sandbox, capped(tmp_path, sandbox, max_connections=2))
    token = await proxy.token()
    started = time.monotonic()
    async with InFlight(sandbox) as inflight:
        results = await asyncio.gather(
            *[fetch(http, proxy.app_url("v1p1/orgs"), token) for _ in range(6)]
        )
    elapsed = time.monotonic() - started
    assert [status for status, _, _ in results] == [200] * 6
    assert inflight.peak == 2, "the cap must be reached and never passed"
    assert elapsed >= 3 * 0.25 - 0.05  # six requests through two slots: three rounds
    assert len(recorded(sandbox)) == 6


async def test_queue_is_first_come_first_served(sandbox, start_proxy, tmp_path, http):
    sandbox.faults.delay_head = 0.15
    proxy = await start_proxy(sandbox, capped(tmp_path, sandbox, max_connections=1))
    token = await proxy.token()
    tasks = []
    for i in range(5):
        url = proxy.app_url(f"v1p1/orgs?limit=1&offset={i}")
        tasks.append(asyncio.get_running_loop().create_task(fetch(http, url, token)))
        await asyncio.sleep(0.03)  # queue in a known order, all while the first is in flight
    results = await asyncio.gather(*tasks)
    assert all(status == 200 for status, _, _ in results)
    offsets = [r.path.rsplit("offset=", 1)[1] for r in recorded(sandbox)]
    assert offsets == ["0", "1", "2", "3", "4"]


async def test_waiting_past_max_wait_is_503_with_retry_after(sandbox, start_proxy, tmp_path, http):
    sandbox.faults.delay_head = 1.5
    doc = capped(tmp_path, sandbox, max_connections=1, max_wait="300ms")
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    first = asyncio.get_running_loop().create_task(fetch(http, proxy.app_url("v1p1/orgs"), token))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    status, data, headers = await fetch(http, proxy.app_url("v1p1/users"), token)
    waited = time.monotonic() - started
    assert status == 503
    assert_imsx(data)
    assert int(headers["Retry-After"]) >= 1
    assert 0.25 <= waited < 1.0
    assert (await first)[0] == 200
    assert [r.path.rsplit("/", 1)[1] for r in recorded(sandbox)] == ["orgs"]


async def test_a_freed_slot_goes_to_the_waiting_request(sandbox, start_proxy, tmp_path, http):
    """Waiters leave the queue when they give up, and a slot freed later is not lost."""
    sandbox.faults.delay_head = 0.3
    doc = capped(tmp_path, sandbox, max_connections=1, max_wait="100ms")
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    first = asyncio.get_running_loop().create_task(fetch(http, proxy.app_url("v1p1/orgs"), token))
    await asyncio.sleep(0.05)
    assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 503
    assert (await first)[0] == 200
    sandbox.faults.delay_head = 0
    for _ in range(3):
        assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 200


async def _two_proxies(start_proxy: Any, sandbox: Any, doc: dict[str, Any]) -> tuple[Any, Any]:
    one = await start_proxy(sandbox, doc)
    two = await start_proxy(sandbox, doc)
    return one, two


async def test_cap_is_shared_by_processes_on_one_sqlite_file(sandbox, start_proxy, tmp_path, http):
    sandbox.faults.delay_head = 0.25
    doc = capped(tmp_path, sandbox, max_connections=2)
    one, two = await _two_proxies(start_proxy, sandbox, doc)
    token = await one.token()
    async with InFlight(sandbox) as inflight:
        results = await asyncio.gather(
            *[fetch(http, p.app_url("v1p1/orgs"), token) for p in (one, two) * 3]
        )
    assert [status for status, _, _ in results] == [200] * 6
    assert inflight.peak == 2


async def test_cap_is_shared_by_replicas_on_redis(sandbox, start_proxy, tmp_path, http):
    require_redis_server()
    sandbox.faults.delay_head = 0.25
    with RedisServer() as redis:
        doc = capped(tmp_path, sandbox, max_connections=2)
        doc["store"]["url"] = redis.url
        one, two = await _two_proxies(start_proxy, sandbox, doc)
        token = await one.token()
        async with InFlight(sandbox) as inflight:
            results = await asyncio.gather(
                *[fetch(http, p.app_url("v1p1/orgs"), token) for p in (one, two) * 3]
            )
        assert [status for status, _, _ in results] == [200] * 6
        assert inflight.peak == 2
        # Every slot was given back.
        from redis.asyncio import Redis

        client = Redis.from_url(redis.url)
        try:
            assert await client.zcard("orp:slots:district:springfield") == 0
        finally:
            await client.aclose()


async def test_redis_outage_falls_back_to_the_per_process_cap(sandbox, start_proxy, tmp_path, http):
    require_redis_server()
    sandbox.faults.delay_head = 0.2
    with RedisServer() as redis:
        doc = capped(tmp_path, sandbox, max_connections=2)
        doc["store"]["url"] = redis.url
        proxy = await start_proxy(sandbox, doc)
        token = await proxy.token()
        assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 200  # cached
        redis.stop()
        async with InFlight(sandbox) as inflight:
            results = await asyncio.gather(
                *[fetch(http, proxy.app_url("v1p1/orgs"), token) for _ in range(4)]
            )
        assert [status for status, _, _ in results] == [200] * 4
        assert inflight.peak == 2


async def test_vendor_rate_limit_spans_tokens_jwts_and_processes(
    sandbox, start_proxy, tmp_path, http
):
    doc = base_config(tmp_path, sandbox)
    doc["vendors"]["acme"]["rate_limit"] = "4/m"
    one, two = await _two_proxies(start_proxy, sandbox, doc)
    first, second = await one.token(), await one.token()
    async with http.post(
        f"{one.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "acme",
              "client_secret": ACME_CLIENT_SECRET},
    ) as resp:  # fmt: skip
        assert resp.status == 200
        jwt = (await resp.json())["access_token"]
    calls = [(one, first), (two, second), (one, jwt), (two, jwt)]
    for proxy, token in calls:
        assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 200
    before = len(recorded(sandbox))
    for proxy, token in calls:
        status, data, headers = await fetch(http, proxy.app_url("v1p1/orgs"), token)
        assert status == 429
        assert_imsx(data)
        # 4/m: the next token is due in about 15 s, and Retry-After says so.
        assert 10 <= int(headers["Retry-After"]) <= 15
    assert len(recorded(sandbox)) == before, "refused requests never reach the district"
    other = await one.token("other")  # another vendor has its own (unlimited) budget
    assert (await fetch(http, one.app_url("v1p1/orgs", app="app-8"), other))[0] == 200


async def test_vendor_rate_refills(sandbox, start_proxy, tmp_path, http):
    doc = base_config(tmp_path, sandbox)
    doc["vendors"]["acme"]["rate_limit"] = "5/s"
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    statuses = [(await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] for _ in range(7)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    await asyncio.sleep(0.45)  # two tokens come back at 5/s
    assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 200


async def test_district_rate_limit_delays_within_max_wait(sandbox, start_proxy, tmp_path, http):
    doc = capped(tmp_path, sandbox, rate_limit="4/s", max_wait="2s")
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    started = time.monotonic()
    results = await asyncio.gather(
        *[fetch(http, proxy.app_url("v1p1/orgs"), token) for _ in range(6)]
    )
    elapsed = time.monotonic() - started
    assert [status for status, _, _ in results] == [200] * 6
    # A burst of four, then one request every 0.25 s.
    assert elapsed >= 0.45


async def test_district_rate_overflow_past_max_wait_is_503(sandbox, start_proxy, tmp_path, http):
    doc = capped(tmp_path, sandbox, rate_limit="2/m", max_wait="1s")
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    for _ in range(2):
        assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 200
    started = time.monotonic()
    status, data, headers = await fetch(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 503
    assert_imsx(data)
    assert 20 <= int(headers["Retry-After"]) <= 30  # 2/m: a token every 30 s
    assert time.monotonic() - started < 0.5, "a wait longer than max_wait is refused at once"
    assert len(recorded(sandbox)) == 2


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_limiter_state_lives_in_the_store(sandbox, start_proxy, tmp_path, http, kind):
    """A restarted proxy (a new process) keeps the vendor's spent budget."""
    redis = None
    doc = base_config(tmp_path, sandbox)
    doc["vendors"]["acme"]["rate_limit"] = "2/m"
    if kind == "redis":
        require_redis_server()
        redis = RedisServer().start()
        doc["store"]["url"] = redis.url
    try:
        proxy = await start_proxy(sandbox, doc)
        token = await proxy.token()
        for _ in range(2):
            assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 200
        await proxy.stop()
        await proxy.start()
        assert (await fetch(http, proxy.app_url("v1p1/orgs"), token))[0] == 429
    finally:
        if redis is not None:
            redis.close()
