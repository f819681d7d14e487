"""OAuth2 districts through the gateway (docs/http-api.md; RFC 6749 §4.4):
client-credentials token fetched with the connection's scope URIs, cached, fetched once for a
burst (single flight), and refetched once after the district answers 401."""

from __future__ import annotations

import asyncio
from base64 import b64encode
from typing import Any

import pytest

from tests.support import auth, get_json


@pytest.fixture
async def oauth2_sandbox():
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    running = await start_sandbox(SandboxOptions(auth="oauth2"))
    yield running
    await running.close()


def token_requests(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.recorded if r.path.split("?")[0].endswith("/oauth2/token")]


def api_requests(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.recorded if "/ims/oneroster/" in r.path]


async def test_token_is_fetched_once_for_a_burst(oauth2_sandbox, start_proxy, http):
    # What is checked is the count of token requests, not speed: on a loaded machine the
    # thirty answers (sandbox and proxy share this event loop) may take longer than the
    # harness's usual 5 s upstream bound, which would turn a slow answer into a 504.
    proxy = await start_proxy(oauth2_sandbox, upstream_timeout="100s")
    token = await proxy.token()

    async def one(i: int) -> int:
        status, _, _ = await get_json(http, proxy.app_url(f"v1p1/users?limit=1&offset={i}"), token)
        return status

    assert await asyncio.gather(*(one(i) for i in range(30))) == [200] * 30
    assert len(token_requests(oauth2_sandbox)) == 1
    # Cached afterwards too.
    assert await one(0) == 200
    assert len(token_requests(oauth2_sandbox)) == 1
    for rec in api_requests(oauth2_sandbox):
        values = [v for k, v in rec.headers if k.lower() == "authorization"]
        assert len(values) == 1 and values[0].startswith("Bearer ")
        assert token not in values[0]


async def test_token_request_carries_the_connections_scope_uris(oauth2_sandbox, start_proxy, http):
    proxy = await start_proxy(oauth2_sandbox)
    token = await proxy.token()
    status, _, _ = await get_json(http, proxy.app_url("rostering/v1p2/orgs"), token)
    assert status == 200
    body = token_requests(oauth2_sandbox)[0].body.decode()
    assert "grant_type=client_credentials" in body
    assert "https%3A%2F%2Fpurl.imsglobal.org%2Fspec%2For%2Fv1p2%2Fscope%2Froster-core.readonly" in (
        body
    )


async def test_district_401_refetches_the_token_and_retries_once(oauth2_sandbox, start_proxy, http):
    proxy = await start_proxy(oauth2_sandbox)
    token = await proxy.token()
    status, _, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 200
    assert len(token_requests(oauth2_sandbox)) == 1

    oauth2_sandbox.revoke_all_tokens()
    before = len(api_requests(oauth2_sandbox))
    status, data, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 200, data
    assert len(token_requests(oauth2_sandbox)) == 2
    assert len(api_requests(oauth2_sandbox)) == before + 2  # the 401, then the retry

    # A write is retried the same way (its buffered body is sent again, since the district
    # refused the first one before applying it).
    oauth2_sandbox.revoke_all_tokens()
    async with http.put(
        proxy.app_url("v1p1/categories/cat-401"),
        json={"category": {"sourcedId": "cat-401", "title": "Homework", "status": "active"}},
        headers=auth(token),
    ) as resp:
        assert resp.status in (200, 201)
    assert len(token_requests(oauth2_sandbox)) == 3


async def test_persistent_401_reaches_the_vendor_unchanged(oauth2_sandbox, start_proxy, http):
    proxy = await start_proxy(oauth2_sandbox)
    token = await proxy.token()
    oauth2_sandbox.faults.expire_tokens_after = 0.0  # every district token is dead on arrival
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        status, body, challenge = resp.status, await resp.read(), resp.headers["WWW-Authenticate"]
    assert status == 401
    assert len(token_requests(oauth2_sandbox)) == 2  # one refetch, no loop
    # The district's own 401, byte for byte: its answer to a token of its own, dead on arrival.
    target = api_requests(oauth2_sandbox)[-1].path
    basic = f"{oauth2_sandbox.key}:{oauth2_sandbox.secret}"
    async with http.post(
        oauth2_sandbox.token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {b64encode(basic.encode()).decode()}"},
    ) as resp:
        assert resp.status == 200
        district_token = (await resp.json())["access_token"]
    origin = oauth2_sandbox.base_url.split("/", 3)[:3]
    async with http.get(
        "/".join(origin) + target, headers={"Authorization": f"Bearer {district_token}"}
    ) as resp:
        assert resp.status == 401
        assert body == await resp.read()
        assert challenge == resp.headers["WWW-Authenticate"]


async def test_broken_token_endpoint_is_502(oauth2_sandbox, start_proxy, tmp_path, http):
    from tests.support import base_config, free_port

    doc = base_config(tmp_path, oauth2_sandbox)
    doc["districts"]["springfield"]["token_url"] = f"http://127.0.0.1:{free_port()}/token"
    proxy = await start_proxy(oauth2_sandbox, doc)
    token = await proxy.token()
    status, data, _ = await get_json(http, proxy.app_url("v1p1/orgs"), token)
    assert status == 502
    assert data["imsx_codeMajor"] == "failure"
    assert api_requests(oauth2_sandbox) == []


async def test_infinite_campus_district_through_the_proxy(start_proxy, tmp_path, http):
    """The IC profile needs the vendor header on gradebook calls: with it configured the
    gradebook answers 200; a vendor without it gets the district's own 401 unchanged."""
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox
    from tests.support import base_config

    ic = await start_sandbox(SandboxOptions(profile="infinite-campus"))
    try:
        doc = base_config(tmp_path, ic)
        assert "/campus/api/oneroster/" in doc["districts"]["springfield"]["base_url"]
        proxy = await start_proxy(ic, doc)
        token = await proxy.token()
        for path in (
            "v1p1/lineItems?limit=1",
            "gradebook/v1p2/categories?limit=1",
            "v1p1/users?limit=1",
        ):
            status, data, _ = await get_json(http, proxy.app_url(path), token)
            assert status == 200, (path, data)
        doc["vendors"]["acme"].pop("vendor_authorization")
        proxy2 = await start_proxy(ic, doc)
        token2 = await proxy2.token()
        status, data, _ = await get_json(http, proxy2.app_url("v1p1/lineItems?limit=1"), token2)
        assert status == 401
        assert data["imsx_codeMajor"] == "failure"
    finally:
        await ic.close()
