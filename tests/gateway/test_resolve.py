"""Store connections through the gateway (docs/commands.md): an appId the
TOML file does not define is read from the store, once per ``cache_ttl``, with the sandbox as
the district verifying every signature itself; renewals, removals and store outages."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy.connections import managed
from proxy.connections.managed import ConfigEntries
from proxy.signing.oauth2 import basic_credentials
from proxy.store.crypto import SecretBox, new_key
from tests.redis_server import RedisServer, require_redis_server
from tests.support import ACME_CLIENT_SECRET, assert_imsx, base_config, get_json

TTL = 1.0  # base_config's cache_ttl


def with_key(doc: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    doc["store"]["secret_keys"] = [key or new_key()]
    return doc


def box_of(proxy: Any) -> SecretBox:
    return proxy.services.secret_box()


async def add(proxy: Any, app_id: str, sandbox: Any, **fields: Any) -> None:
    table = {
        "vendor": "acme",
        "district": "springfield",
        "key": sandbox.key,
        "secret": sandbox.secret,
        "scopes": ["roster-core.readonly", "roster.readonly"],
        **fields,
    }
    await managed.add_connection(
        proxy.services.store,
        ConfigEntries.of(proxy.config),
        box_of(proxy),
        app_id,
        table,
        interface="cli",
    )


async def renew(proxy: Any, sandbox: Any, app_id: str, key: str, *, interface: str) -> None:
    """New credentials that the sandbox accepts, renewed in the store; returns once the old
    look-up is past ``cache_ttl``."""
    secret = "renewed-secret-0123456789"
    sandbox.accept_credentials(key, secret)
    await managed.renew_connection(
        proxy.services.store,
        ConfigEntries.of(proxy.config),
        box_of(proxy),
        app_id,
        key,
        secret,
        interface=interface,
    )
    await asyncio.sleep(TTL + 0.2)


def consumer_keys(sandbox: Any, since: int = 0) -> list[str]:
    keys = []
    for rec in sandbox.recorded[since:]:
        for name, value in rec.headers:
            if name.lower() == "authorization":
                match = re.search(r'oauth_consumer_key="([^"]+)"', value)
                keys.append(match.group(1) if match else value)
    return keys


async def test_a_store_connection_serves_after_one_store_read(sandbox, start_proxy, http, tmp_path):
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    token = await proxy.token()
    await add(proxy, "store-1", sandbox)
    resolver = proxy.services.store_connections
    before = resolver.reads

    status, body, _ = await get_json(http, proxy.app_url("v1p1/users?limit=2", "store-1"), token)
    assert status == 200 and len(body["users"]) == 2
    for _ in range(5):
        status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token)
        assert status == 200
    assert resolver.reads - before == 1  # one read, then the cache
    # Its scopes apply: demographics is not shared.
    status, body, _ = await get_json(http, proxy.app_url("v1p1/demographics", "store-1"), token)
    assert status == 403
    # The TOML connections are not read from the store at all.
    status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 200 and resolver.reads - before == 1


async def test_unknown_and_other_vendors_appids_are_the_same_404(
    sandbox, start_proxy, http, tmp_path
):
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    await add(proxy, "store-1", sandbox)
    other = await proxy.token("other")
    s1, unknown, _ = await get_json(http, proxy.app_url("v1p1/orgs", "nope"), other)
    s2, foreign, _ = await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), other)
    assert s1 == s2 == 404 and unknown == foreign
    assert_imsx(foreign)


async def test_a_store_district_with_its_own_limits(sandbox, start_proxy, http, tmp_path):
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    catalog = ConfigEntries.of(proxy.config)
    await managed.add_district(
        proxy.services.store,
        catalog,
        "shelbyville",
        {"base_url": sandbox.base_url, "max_connections": 2, "versions": ["1.1"]},
        interface="admin",
    )
    await add(proxy, "store-2", sandbox, district="shelbyville")
    token = await proxy.token()
    statuses = await asyncio.gather(
        *(get_json(http, proxy.app_url("v1p1/orgs", "store-2"), token) for _ in range(6))
    )
    assert [s for s, _, _ in statuses] == [200] * 6
    conn = await proxy.services.store_connections.get("store-2", proxy.services.runtime.current)
    assert conn.district.name == "shelbyville" and conn.district.max_connections == 2


async def test_renew_signs_with_the_new_credentials_after_cache_ttl(
    sandbox, start_proxy, http, tmp_path
):
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    token = await proxy.token()
    await add(proxy, "store-1", sandbox)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200

    await renew(proxy, sandbox, "store-1", "renewed-key", interface="cli")
    mark = len(sandbox.recorded)
    for _ in range(3):
        assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200
    assert consumer_keys(sandbox, mark) == ["renewed-key"] * 3


async def test_remove_answers_404_within_cache_ttl(sandbox, start_proxy, http, tmp_path):
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    token = await proxy.token()
    await add(proxy, "store-1", sandbox)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200
    await managed.remove_connection(
        proxy.services.store, ConfigEntries.of(proxy.config), "store-1", interface="cli"
    )
    await asyncio.sleep(TTL + 0.2)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 404


async def test_without_the_key_a_store_connection_is_503_never_500(
    sandbox, start_proxy, http, tmp_path
):
    key = new_key()
    doc = with_key(base_config(tmp_path, sandbox), key)
    first = await start_proxy(sandbox, doc)
    await add(first, "store-1", sandbox)
    token = await first.token()
    await first.stop()
    doc["store"]["secret_keys"] = [new_key()]  # the wrong key
    second = await start_proxy(sandbox, doc)
    status, body, headers = await get_json(http, second.app_url("v1p1/orgs", "store-1"), token)
    assert status == 503 and "Retry-After" in headers
    assert_imsx(body)


@pytest.fixture
def own_redis():
    require_redis_server()
    with RedisServer() as server:
        yield server


async def test_store_down_cached_serve_uncached_503(
    sandbox, start_proxy, http, tmp_path: Path, own_redis: RedisServer
):
    doc = with_key(base_config(tmp_path, sandbox))
    doc["store"]["url"] = own_redis.url
    proxy = await start_proxy(sandbox, doc)
    # A JWT: its check needs no store, so what is seen here is the connection look-up alone.
    async with http.post(
        f"{proxy.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_credentials("acme", ACME_CLIENT_SECRET)},
    ) as resp:
        token = (await resp.json())["access_token"]
    await add(proxy, "store-1", sandbox)
    await add(proxy, "store-2", sandbox)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200

    own_redis.stop()
    await asyncio.sleep(TTL + 0.2)  # store-1's look-up is now past cache_ttl
    status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token)
    assert status == 200
    status, body, headers = await get_json(http, proxy.app_url("v1p1/orgs", "store-2"), token)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert_imsx(body)
    own_redis.start()  # empty: this test server keeps nothing on disk
    await add(proxy, "store-2", sandbox)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-2"), token))[0] == 200


@pytest.fixture
async def oauth2_sandbox():
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    running = await start_sandbox(SandboxOptions(auth="oauth2"))
    yield running
    await running.close()


def bearers(sandbox: Any, since: int = 0) -> list[str]:
    return [
        value
        for rec in sandbox.recorded[since:]
        if "/ims/oneroster/" in rec.path
        for name, value in rec.headers
        if name.lower() == "authorization"
    ]


def token_clients(sandbox: Any, since: int = 0) -> list[str]:
    return [
        rec.body.decode()
        for rec in sandbox.recorded[since:]
        if rec.path.split("?")[0].endswith("/oauth2/token")
    ]


async def test_renew_of_an_oauth2_connection_drops_the_old_district_token(
    oauth2_sandbox, start_proxy, http, tmp_path
):
    sandbox = oauth2_sandbox
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    token = await proxy.token()
    await add(proxy, "store-1", sandbox)
    for _ in range(2):
        assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200
    old_bearers = set(bearers(sandbox))
    assert len(old_bearers) == 1 and len(token_clients(sandbox)) == 1

    await renew(proxy, sandbox, "store-1", "renewed-client", interface="admin")
    mark = len(sandbox.recorded)
    for _ in range(3):
        assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200
    new_bearers = set(bearers(sandbox, mark))
    assert len(new_bearers) == 1 and not new_bearers & old_bearers
    fetched = token_clients(sandbox, mark)
    assert len(fetched) == 1


async def test_applications_lists_the_vendors_store_connections(
    sandbox, start_proxy, http, tmp_path
):
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    await add(proxy, "store-1", sandbox, expires="2031-01-31")
    await add(proxy, "store-9", sandbox, vendor="other")
    token = await proxy.token()
    status, body, _ = await get_json(http, f"{proxy.url}/applications", token)
    assert status == 200
    listed = {a["appId"]: a for a in body["applications"]}
    assert set(listed) == {"app-7", "store-1"}
    assert listed["store-1"]["expires"] == "2031-01-31"
    assert listed["store-1"]["base_url"].endswith("/store-1/ims/oneroster")
    assert "key" not in listed["store-1"] and "secret" not in listed["store-1"]
    assert (listed["app-7"]["source"], listed["store-1"]["source"]) == ("config", "store")


async def test_store_connections_have_expiry_series_until_removed(
    sandbox, start_proxy, http, tmp_path
):
    proxy = await start_proxy(sandbox, with_key(base_config(tmp_path, sandbox)))
    await add(proxy, "store-1", sandbox, expires="2031-01-31")
    await add(proxy, "store-2", sandbox)

    async def expiry_lines() -> list[str]:
        async with http.get(f"{proxy.admin_url}/metrics") as resp:
            text = await resp.text()
        return [
            line
            for line in text.splitlines()
            if line.startswith("oneroster_proxy_connection_expiry_timestamp_seconds{")
        ]

    lines = await expiry_lines()
    store_lines = [line for line in lines if 'app="store-' in line]
    assert len(store_lines) == 1, lines
    labels, value = store_lines[0].rsplit(" ", 1)
    assert labels.endswith('{app="store-1",district="springfield"}')
    # The end of 2031-01-31, UTC (expires is inclusive).
    assert float(value) == datetime(2031, 2, 1, tzinfo=UTC).timestamp()
    await managed.remove_connection(
        proxy.services.store, ConfigEntries.of(proxy.config), "store-1", interface="cli"
    )
    assert not [line for line in await expiry_lines() if 'app="store-' in line]
