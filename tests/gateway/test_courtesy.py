"""SIS courtesy on the real proxy in front of the real sandbox district (docs/configuration.md
"SIS courtesy"): a pause answers 503 before anything reaches the district and says so on
``GET /applications`` and ``/metrics``; a peak window's cap replaces the district's; a busy
district's waiting requests go round-robin by vendor. The wall clock is injected
(``Limits.wall``), so no test waits for a time of day."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest

from tests.gateway.test_limits import InFlight, capped, fetch, recorded
from tests.support import assert_imsx, auth
from tests.test_metrics import scrape, value

# These tests wait out real time (aiohttp's socket and body deadlines, Retry-After, district
# slowness, circuit cool-downs): they run in CI and are left out of the quick loop
# (`pytest -m "not slow"`, tests/conftest.py).
pytestmark = pytest.mark.slow

SUMMER = {"from": date(2027, 6, 20), "to": date(2027, 8, 1), "reason": "summer rollover"}
PEAK = {"days": "mon-fri", "from": "07:00", "to": "16:00", "max_connections": 1}
# Sunday 2027-07-04 12:00 in Chicago; the pause ends at 2027-08-02 00:00 there (05:00 UTC).
IN_SUMMER = datetime(2027, 7, 4, 17, 0, tzinfo=UTC).timestamp()
PAUSE_END = datetime(2027, 8, 2, 5, 0, tzinfo=UTC).timestamp()
# Monday 2027-03-01 08:00 and 17:00 in Chicago (UTC-6).
MONDAY_PEAK = datetime(2027, 3, 1, 14, 0, tzinfo=UTC).timestamp()
MONDAY_EVENING = datetime(2027, 3, 1, 23, 0, tzinfo=UTC).timestamp()


def at(proxy: Any, when: float) -> None:
    proxy.services.limits.wall = lambda: when


async def applications(proxy: Any, http: aiohttp.ClientSession, token: str) -> dict[str, Any]:
    async with http.get(f"{proxy.url}/applications", headers=auth(token)) as resp:
        assert resp.status == 200
        return {a["appId"]: a for a in (await resp.json())["applications"]}


async def test_a_pause_answers_503_until_its_end_and_vendors_are_told(
    sandbox, start_proxy, tmp_path, http
):
    doc = capped(tmp_path, sandbox, timezone="America/Chicago", pauses=[SUMMER])
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    at(proxy, IN_SUMMER)
    status, data, headers = await fetch(http, proxy.app_url("v1p1/users"), token)
    assert status == 503
    assert_imsx(data, "server_busy")
    assert "summer rollover" in data["imsx_description"]
    assert "2027-08-01" in data["imsx_description"]
    assert int(headers["Retry-After"]) == math.ceil(PAUSE_END - IN_SUMMER)
    # Every method, every connection of the district; nothing was sent to it.
    async with http.post(proxy.app_url("v1p2/gradebook/lineItems"), headers=auth(token)) as r:
        assert r.status == 503
    assert (await fetch(http, proxy.app_url("v1p1/orgs", app="app-8"), await proxy.token("other")))[
        0
    ] == 503
    assert recorded(sandbox) == []
    apps = await applications(proxy, http, token)
    assert apps["app-7"]["paused_until"] == "2027-08-01"
    assert apps["app-7"]["pause_reason"] == "summer rollover"
    _, samples = await scrape(proxy, http)
    assert value(samples, "district_paused", district="springfield") == 1

    at(proxy, PAUSE_END)  # the first instant after the last paused day
    assert (await fetch(http, proxy.app_url("v1p1/users"), token))[0] == 200
    apps = await applications(proxy, http, token)
    assert apps["app-7"]["paused_until"] is None and apps["app-7"]["pause_reason"] is None
    _, samples = await scrape(proxy, http)
    assert value(samples, "district_paused", district="springfield") == 0


async def test_a_peak_window_cap_replaces_the_district_cap(sandbox, start_proxy, tmp_path, http):
    sandbox.faults.delay_head = 0.2
    doc = capped(tmp_path, sandbox, timezone="America/Chicago", max_connections=3, windows=[PEAK])
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()

    async def peak(when: float) -> int:
        at(proxy, when)
        async with InFlight(sandbox) as inflight:
            results = await asyncio.gather(
                *[fetch(http, proxy.app_url("v1p1/orgs"), token) for _ in range(4)]
            )
        assert [r[0] for r in results] == [200] * 4
        return inflight.peak

    assert await peak(MONDAY_PEAK) == 1
    assert await peak(MONDAY_EVENING) == 3


async def test_a_second_vendor_lookup_is_let_in_before_a_bulk_sync(
    sandbox, start_proxy, tmp_path, http
):
    proxy = await start_proxy(sandbox, capped(tmp_path, sandbox, max_connections=1))
    acme, other = await proxy.token(), await proxy.token("other")
    # Both tokens known to the proxy's cache first, so each request reaches the queue in the
    # order it is sent.
    lookup = proxy.app_url("v1p1/orgs", app="app-8")
    assert (await fetch(http, proxy.app_url("v1p1/orgs"), acme))[0] == 200
    assert (await fetch(http, lookup, other))[0] == 200
    seen = len(recorded(sandbox))
    sandbox.faults.delay_head = 0.15
    loop = asyncio.get_running_loop()
    tasks = []
    for i in range(5):  # acme's sync: five pages, queued one after another
        url = proxy.app_url(f"v1p1/users?limit=1&offset={i}")
        tasks.append(loop.create_task(fetch(http, url, acme)))
        await asyncio.sleep(0.02)
    tasks.append(loop.create_task(fetch(http, lookup, other)))  # arrives last
    results = await asyncio.gather(*tasks)
    assert [r[0] for r in results] == [200] * 6
    order = [r.path.rsplit("/", 1)[1] for r in recorded(sandbox)[seen:]]
    # The first page held the slot; the lookup is next, then the rest of the sync.
    assert order[:2] == ["users?limit=1&offset=0", "orgs"], order
    _, samples = await scrape(proxy, http)
    assert value(samples, "district_wait_seconds_count", district="springfield") == 5


async def test_a_window_cap_holds_across_processes_on_one_store(
    sandbox, start_proxy, tmp_path, http
):
    sandbox.faults.delay_head = 0.2
    doc = capped(tmp_path, sandbox, timezone="America/Chicago", max_connections=4, windows=[PEAK])
    one = await start_proxy(sandbox, doc)
    two = await start_proxy(sandbox, doc)
    for proxy in (one, two):
        at(proxy, MONDAY_PEAK)
    token = await one.token()
    async with InFlight(sandbox) as inflight:
        results = await asyncio.gather(
            *[fetch(http, p.app_url("v1p1/orgs"), token) for p in (one, two) * 3]
        )
    assert [r[0] for r in results] == [200] * 6
    assert inflight.peak == 1


async def test_a_lookup_on_another_replica_gets_the_next_freed_slot(
    sandbox, start_proxy, tmp_path, http
):
    """One store, two proxies: the sync saturates the district through the first, and the
    lookup through the second still gets the next slot the first one frees (the district's
    turn in the store), instead of losing every time to the first proxy's own queue."""
    doc = capped(tmp_path, sandbox, max_connections=1, max_wait="20s")
    one = await start_proxy(sandbox, doc)
    two = await start_proxy(sandbox, doc)
    acme, other = await one.token(), await one.token("other")
    assert (await fetch(http, one.app_url("v1p1/orgs"), acme))[0] == 200
    assert (await fetch(http, two.app_url("v1p1/orgs", app="app-8"), other))[0] == 200
    seen = len(recorded(sandbox))
    sandbox.faults.delay_head = 0.15
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(fetch(http, one.app_url(f"v1p1/users?limit=1&offset={i}"), acme))
        for i in range(6)
    ]
    await asyncio.sleep(0.05)
    tasks.append(loop.create_task(fetch(http, two.app_url("v1p1/orgs", app="app-8"), other)))
    results = await asyncio.gather(*tasks)
    assert [r[0] for r in results] == [200] * 7
    order = [r.path.rsplit("/", 1)[1] for r in recorded(sandbox)[seen:]]
    assert order.index("orgs") <= 2, order
