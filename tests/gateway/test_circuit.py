"""Circuit breaking per district (docs/http-api.md, the circuit breaker): after
consecutive connect failures or timeouts (one per request) the proxy fails fast with 503
(imsx, ``Retry-After``) for a cool-down, then lets one probe through; success closes the
circuit. State in ``/admin/connections`` and in the metric
``oneroster_proxy_circuit_open{district}``."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Any

import aiohttp
import pytest

from tests.support import ADMIN_TOKEN, assert_imsx, auth, base_config

# These tests wait out real time (aiohttp's socket and body deadlines, Retry-After, district
# slowness, circuit cool-downs): they run in CI and are left out of the quick loop
# (`pytest -m "not slow"`, tests/conftest.py).
pytestmark = pytest.mark.slow

KEY, SECRET = "circuit-key", "circuit-secret"


class Coordinates:
    key = KEY
    secret = SECRET

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


def reserve_port() -> socket.socket:
    """A bound, never-listening loopback socket: connections to its port are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


async def start_district(port: int, **faults: Any) -> Any:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    sandbox = await start_sandbox(SandboxOptions(key=KEY, secret=SECRET), port=port)
    for name, value in faults.items():
        setattr(sandbox.faults, name, value)
    return sandbox


async def admin_state(http: aiohttp.ClientSession, proxy: Any) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.get(f"{proxy.admin_url}/admin/connections", headers=headers) as resp:
        views = (await resp.json())["connections"]
    async with http.get(f"{proxy.admin_url}/metrics") as resp:
        text = await resp.text()
    match = re.search(r'^oneroster_proxy_circuit_open\{district="springfield"\} (\S+)$', text, re.M)
    gauge = match.group(1) if match else "absent"
    states = {view["circuit"] for view in views if view["district"] == "springfield"}
    assert len(states) == 1
    return states.pop(), gauge


async def get(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, Any, Any]:
    async with http.get(url, headers=auth(token)) as resp:
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data, resp.headers


async def breaker_proxy(start_proxy: Any, tmp_path: Any, port: int, **server: Any) -> Any:
    doc = base_config(tmp_path, Coordinates(f"http://127.0.0.1:{port}"), **server)
    proxy = await start_proxy(None, doc)
    proxy.services.circuits.threshold = 3
    proxy.services.circuits.cooldown = 0.6
    return proxy


async def test_opens_fails_fast_probes_and_closes(start_proxy, tmp_path, http):
    sock = reserve_port()
    port = sock.getsockname()[1]
    proxy = await breaker_proxy(start_proxy, tmp_path, port)
    token = await proxy.token()
    url = proxy.app_url("v1p1/orgs")
    assert await admin_state(http, proxy) == ("closed", "absent")

    # Each GET fails to connect (three attempts each) and counts once: the third opens it.
    for expected in ("closed", "closed", "open"):
        status, data, _ = await get(http, url, token)
        assert status == 502
        assert (await admin_state(http, proxy))[0] == expected
    assert await admin_state(http, proxy) == ("open", "1.0")

    # Open: refused at once, without trying the district.
    started = time.monotonic()
    status, data, headers = await get(http, url, token)
    assert status == 503
    assert_imsx(data)
    assert headers["Retry-After"] == "1"
    assert time.monotonic() - started < 0.1

    # The district comes back; after the cool-down one probe goes through and closes it.
    sock.close()
    sandbox = await start_district(port, delay_head=0.3)
    try:
        await asyncio.sleep(0.7)
        assert (await admin_state(http, proxy))[0] == "half-open"
        results = await asyncio.gather(*[get(http, url, token) for _ in range(3)])
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200, 503, 503], "exactly one probe while half-open"
        assert len(sandbox.recorded) == 1
        assert await admin_state(http, proxy) == ("closed", "0.0")
        sandbox.faults.delay_head = 0
        assert [(await get(http, url, token))[0] for _ in range(3)] == [200] * 3
    finally:
        await sandbox.close()


async def test_failed_probe_opens_again(start_proxy, tmp_path, http):
    with reserve_port() as sock:
        proxy = await breaker_proxy(start_proxy, tmp_path, sock.getsockname()[1])
        token = await proxy.token()
        url = proxy.app_url("v1p1/orgs")
        for _ in range(3):
            assert (await get(http, url, token))[0] == 502
        assert (await admin_state(http, proxy))[0] == "open"
        await asyncio.sleep(0.7)
        assert (await admin_state(http, proxy))[0] == "half-open"
        started = time.monotonic()
        assert (await get(http, url, token))[0] == 502  # the probe, tried once
        assert time.monotonic() - started < 0.3, "a failed probe is not retried"
        assert await admin_state(http, proxy) == ("open", "1.0")
        assert (await get(http, url, token))[0] == 503


async def test_timeouts_open_the_circuit(start_proxy, tmp_path, http):
    sandbox = await start_district(0, hang_paths=["orgs"])
    try:
        port = int(sandbox.base_url.rsplit(":", 1)[1])
        proxy = await breaker_proxy(start_proxy, tmp_path, port, upstream_timeout="200ms")
        token = await proxy.token()
        for _ in range(3):
            assert (await get(http, proxy.app_url("v1p1/orgs"), token))[0] == 504
        assert (await admin_state(http, proxy))[0] == "open"
        status, data, _ = await get(http, proxy.app_url("v1p1/users"), token)
        assert status == 503
        assert_imsx(data)
        assert len(sandbox.recorded) == 3
    finally:
        await sandbox.close()


async def test_district_error_answers_do_not_open_it(start_proxy, tmp_path, http):
    """A district answering 5xx is up: its answers pass through, the circuit stays closed."""
    sandbox = await start_district(0, status_503_retry_after=60)
    try:
        port = int(sandbox.base_url.rsplit(":", 1)[1])
        proxy = await breaker_proxy(start_proxy, tmp_path, port)
        token = await proxy.token()
        for _ in range(5):
            assert (await get(http, proxy.app_url("v1p1/orgs"), token))[0] == 503
        assert (await admin_state(http, proxy))[0] == "closed"
        assert len(sandbox.recorded) == 5
    finally:
        await sandbox.close()


async def test_success_resets_the_count(start_proxy, tmp_path, http):
    """Failures must be consecutive: a success in between starts the count again."""
    sandbox = await start_district(0)
    try:
        port = int(sandbox.base_url.rsplit(":", 1)[1])
        proxy = await breaker_proxy(start_proxy, tmp_path, port, upstream_timeout="200ms")
        token = await proxy.token()
        sandbox.faults.hang_paths = ["orgs"]
        for _ in range(4):
            for _ in range(2):
                assert (await get(http, proxy.app_url("v1p1/orgs"), token))[0] == 504
            assert (await get(http, proxy.app_url("v1p1/users"), token))[0] == 200
        assert (await admin_state(http, proxy))[0] == "closed"
    finally:
        await sandbox.close()
