"""Replicas on one redis store, and store outages, seen from the gateway (docs/configuration.md,
``[store] url``).

Two real proxies share a real ``redis-server``: a token issued or revoked through one is
honoured by the other within ``cache_ttl``. When redis goes away, tokens verified recently keep
working (past ``cache_ttl`` too, while the store cannot be asked), others get 503 imsx (never
500) and ``/readyz`` says 503; when redis returns the proxy recovers by itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.redis_server import RedisServer, require_redis_server
from tests.support import ADMIN_TOKEN, assert_imsx, base_config, get_json


@pytest.fixture
def redis_server():
    require_redis_server()
    with RedisServer() as server:
        yield server


def redis_config(tmp_path: Any, sandbox: Any, url: str) -> dict[str, Any]:
    doc = base_config(tmp_path, sandbox)
    doc["store"] = {"url": url, "cache_ttl": "1s"}
    return doc


async def test_revocation_reaches_every_replica_within_cache_ttl(
    sandbox, start_proxy, tmp_path, http, redis_server
):
    doc = redis_config(tmp_path, sandbox, redis_server.url)
    a = await start_proxy(sandbox, doc)
    b = await start_proxy(sandbox, doc)
    token = await a.token()
    token_id = token.split("_")[1]
    for replica in (a, b):
        status, _, _ = await get_json(http, replica.app_url("v1p1/orgs"), token)
        assert status == 200

    async with http.delete(
        f"{a.admin_url}/admin/tokens/{token_id}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as resp:
        assert resp.status == 200
    # The replica that took the admin call refuses at once; the other within cache_ttl.
    status, _, _ = await get_json(http, a.app_url("v1p1/orgs"), token)
    assert status == 401
    deadline = asyncio.get_running_loop().time() + 1.0 + 1.5
    while True:
        status, data, _ = await get_json(http, b.app_url("v1p1/orgs"), token)
        if status == 401:
            assert_imsx(data)
            break
        assert status == 200
        assert asyncio.get_running_loop().time() < deadline, "revocation did not reach replica b"
        await asyncio.sleep(0.1)


async def test_store_outage_cached_tokens_then_503_then_recovery(
    sandbox, start_proxy, tmp_path, http, redis_server
):
    proxy = await start_proxy(sandbox, redis_config(tmp_path, sandbox, redis_server.url))
    token = await proxy.token()
    status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 200
    async with http.get(f"{proxy.admin_url}/readyz") as resp:
        assert resp.status == 200

    redis_server.stop()
    # The token was looked up moments ago: its cache entry still vouches for it.
    status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 200
    async with http.get(f"{proxy.admin_url}/readyz") as resp:
        assert resp.status == 503

    await asyncio.sleep(1.2)  # cache_ttl lapses
    # Still honoured: it passed every check moments ago and the store cannot be asked.
    status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 200
    # A token this proxy never verified gets 503 with Retry-After, not a 401 (it can't know).
    status, data, headers = await get_json(
        http, proxy.app_url("v1p1/orgs"), "orp_abcdefghijkl_" + "A" * 43
    )
    assert status == 503
    assert_imsx(data)
    assert int(headers["Retry-After"]) >= 1

    redis_server.start()  # back, empty (no persistence in tests)
    fresh = await proxy.token()
    status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), fresh)
    assert status == 200
    async with http.get(f"{proxy.admin_url}/readyz") as resp:
        assert resp.status == 200


async def test_sqlite_and_redis_proxies_behave_alike_for_tokens(
    sandbox, start_proxy, tmp_path, http, redis_server
):
    """The same token lifecycle, observed through the gateway, on both backends."""
    for url in (f"sqlite://{tmp_path}/same.db", redis_server.url):
        proxy = await start_proxy(sandbox, redis_config(tmp_path, sandbox, url))
        token = await proxy.token()
        status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
        assert status == 200, url
        async with http.post(
            f"{proxy.admin_url}/admin/vendors/acme/tokens/rotate",
            json={"grace": "0s"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as resp:
            assert resp.status in (200, 201)
            new = (await resp.json())["token"]
        status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
        assert status == 401, url
        status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), new)
        assert status == 200, url
