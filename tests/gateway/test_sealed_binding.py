"""A sealed secret is bound to where it is sent (docs/http-api.md, "Store connections"): a
district pointed elsewhere by a write to the store alone (one SQL UPDATE, one HSET) does not
decrypt, so the proxy never sends the secret there; the proxy's own interfaces re-seal.

The attacker has write access to the store only. A real proxy, the real sandbox as the
district (OAuth 2), a real listener standing in for the attacker's token endpoint, and the
store as sqlite and as a real redis-server."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web

from proxy.connections import managed
from proxy.connections.managed import ConfigEntries
from proxy.store.crypto import new_key
from tests.redis_server import RedisServer, require_redis_server
from tests.support import ADMIN_TOKEN, base_config, get_json

TTL = 1.0  # base_config's cache_ttl


@pytest.fixture
async def oauth2_sandbox() -> AsyncIterator[Any]:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    running = await start_sandbox(SandboxOptions(auth="oauth2"))
    yield running
    await running.close()


@pytest.fixture
async def listener() -> AsyncIterator[tuple[str, list[bytes]]]:
    """The attacker's endpoint: records whatever reaches it."""
    seen: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(await request.read() + str(request.headers).encode())
        return web.json_response({"access_token": "x", "token_type": "bearer"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/store.db"
        return
    require_redis_server()
    with RedisServer() as server:
        yield server.url


def tamper(url: str, name: str, field: str, value: str) -> None:
    """One write to the store, not through the proxy."""
    if url.startswith("sqlite://"):
        with sqlite3.connect(url.removeprefix("sqlite://")) as db:
            db.execute(f"UPDATE districts SET {field} = ? WHERE name = ?", (value, name))
    else:
        with redis.Redis.from_url(url) as client:
            client.hset(f"orp:district:{name}", field, value)


async def test_a_district_pointed_elsewhere_in_the_store_never_gets_the_secret(
    oauth2_sandbox, start_proxy, http, tmp_path, listener, store_url
):
    sandbox = oauth2_sandbox
    doc = base_config(tmp_path, sandbox)
    doc["store"].update(url=store_url, secret_keys=[new_key()])
    proxy = await start_proxy(sandbox, doc)
    store, catalog, box = (
        proxy.services.store,
        ConfigEntries.of(proxy.config),
        proxy.services.secret_box(),
    )
    await managed.add_district(
        store,
        catalog,
        "shelbyville",
        {"base_url": sandbox.base_url, "auth": "oauth2", "token_url": sandbox.token_url},
        interface="cli",
    )
    for app_id, district in (("store-1", "shelbyville"), ("store-2", "springfield")):
        table = {
            "vendor": "acme",
            "district": district,
            "key": sandbox.key,
            "secret": sandbox.secret,
            "scopes": ["roster-core.readonly"],
        }
        await managed.add_connection(store, catalog, box, app_id, table, interface="cli")
    token = await proxy.token()
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200

    # A change through the proxy's own admin API re-seals: still served.
    other_spelling = sandbox.base_url.replace("127.0.0.1", "localhost")
    async with http.patch(
        f"{proxy.admin_url}/admin/districts/shelbyville",
        json={"base_url": other_spelling},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
    await asyncio.sleep(TTL + 0.2)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200

    url, seen = listener
    tamper(store_url, "shelbyville", "token_url", f"{url}/token")
    await asyncio.sleep(TTL + 0.2)
    status, body, _ = await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token)
    assert status == 503
    description = body["imsx_description"]
    assert "store-1" in description and "credentials must be entered again" in description
    assert seen == []  # the secret went nowhere
    # Other connections are unaffected.
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-2"), token))[0] == 200
    assert (await get_json(http, proxy.app_url("v1p1/orgs"), token))[0] == 200
    # Its check fails the same way, naming it; another connection's check still runs.
    async with http.post(
        f"{proxy.admin_url}/admin/connections/store-1/check",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as resp:
        assert resp.status == 503 and "store-1" in await resp.text()
    async with http.post(
        f"{proxy.admin_url}/admin/connections/store-2/check",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as resp:
        assert resp.status == 200
    assert seen == []
    # The background checks record it as failing and go on with every other connection.
    from proxy.check.background import BackgroundChecks

    checked = await BackgroundChecks(proxy.services, interval=3600).round()
    assert checked is not None and {"app-7", "app-8", "store-1"} <= set(checked)
    last = (await store.list_check_results("store-1"))[0].document
    assert last["ok"] is False and last["checks"][0]["name"] == "credentials_accepted"
    assert "credentials must be entered again" in last["checks"][0]["detail"]
    assert (await store.list_check_results("store-2"))[0].document["ok"] is True
    assert seen == []

    # Switching auth by the same means does not open it either.
    tamper(store_url, "shelbyville", "token_url", sandbox.token_url)
    tamper(store_url, "shelbyville", "auth", "oauth1")
    await asyncio.sleep(TTL + 0.2)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 503


async def test_a_store_written_by_an_earlier_version_keeps_working(
    sandbox, start_proxy, http, tmp_path
):
    """Secrets sealed by an earlier version (``orp1.``, bound to the appId only) are sealed
    again for their district when ``serve`` starts, and the connection serves."""
    import base64
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from proxy.store.base import ConnectionRecord
    from proxy.store.crypto import SecretBox, parse_key
    from proxy.store.sqlite import SqliteStore
    from proxy.tokens import now_utc

    key = new_key()
    nonce = os.urandom(12)
    body = AESGCM(parse_key(key)).encrypt(nonce, sandbox.secret.encode(), b"old-1")
    kid = SecretBox([parse_key(key)]).current_id
    legacy = f"orp1.{kid}." + base64.urlsafe_b64encode(nonce + body).decode().rstrip("=")
    store = SqliteStore(f"{tmp_path}/store.db")
    await store.open()
    await store.add_connection(
        ConnectionRecord(
            app_id="old-1", vendor="acme", district="springfield", key=sandbox.key,
            secret=legacy, scopes=("roster-core.readonly",), created=now_utc(),
            updated=now_utc(),
        ),
        district_in_store=False,
    )  # fmt: skip
    await store.close()

    doc = base_config(tmp_path, sandbox)
    doc["store"]["secret_keys"] = [key]
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "old-1"), token))[0] == 200
    resealed = await proxy.services.store.get_connection("old-1")
    assert resealed is not None and resealed.secret.startswith("orp2.")
