"""The admin listener against the running proxy: probes, the ``/admin/*`` JSON API behind the
admin bearer, and no secret ever in an answer (docs/http-api.md).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.cli.test_tokens import LISTING_FIELDS, TOKEN_RE, run_cli
from tests.redis_server import RedisServer
from tests.support import (
    ACME_CLIENT_SECRET,
    ACME_VENDOR_AUTH,
    ADMIN_TOKEN,
    JWT_KEY,
    assert_imsx,
    auth,
    base_config,
    raw_exchange,
)

ADMIN = auth(ADMIN_TOKEN)
ENDPOINTS = [
    ("GET", "/admin/connections"),
    ("GET", "/admin/connections/app-7"),
    ("POST", "/admin/connections/app-7/check"),
    ("GET", "/admin/vendors/acme/tokens"),
    ("POST", "/admin/vendors/acme/tokens"),
    ("POST", "/admin/vendors/acme/tokens/rotate"),
    ("DELETE", "/admin/vendors/acme/tokens"),
    ("DELETE", "/admin/tokens/abcdefghijkl"),
    ("POST", "/admin/reload"),
]


class Admin:
    """Calls the admin API and keeps every body it saw, to scan them all for secrets."""

    def __init__(self, proxy: Any, http: aiohttp.ClientSession) -> None:
        self.proxy = proxy
        self.http = http
        self.bodies: list[str] = []
        self.shown_tokens: list[str] = []

    async def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": ADMIN if headers is None else headers}
        if body is not None:
            kwargs["data"] = body if isinstance(body, bytes) else json.dumps(body).encode()
            kwargs["headers"] = {**kwargs["headers"], "Content-Type": "application/json"}
        async with self.http.request(method, self.proxy.admin_url + path, **kwargs) as resp:
            text = await resp.text()
        data = json.loads(text) if text and resp.content_type == "application/json" else text
        if isinstance(data, dict) and "token" in data:
            # The one place a secret may appear: a newly issued token, once.
            self.shown_tokens.append(data["token"])
            text = text.replace(data["token"], "")
        self.bodies.append(text)
        return resp.status, data


@pytest.fixture
def admin(proxy, http) -> Admin:
    return Admin(proxy, http)


async def gateway_status(proxy: Any, http: aiohttp.ClientSession, token: str) -> int:
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        await resp.read()
        return resp.status


async def test_probes_and_metrics_need_no_auth(proxy, http):
    async with http.get(f"{proxy.admin_url}/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    async with http.get(f"{proxy.admin_url}/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
    async with http.get(f"{proxy.admin_url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert "oneroster_proxy_inflight_requests" in await resp.text()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "basic-scheme", "longer", "shorter", "empty"],
)
async def test_every_admin_endpoint_needs_the_admin_token(proxy, http, headers):
    before = await proxy.services.store.list_tokens()
    extra = [("GET", "/admin/nothing-here"), ("GET", "//admin/connections")]
    for n, (method, path) in enumerate([*ENDPOINTS, *extra]):
        async with http.request(method, proxy.admin_url + path, headers=headers) as resp:
            if "Authorization" in headers and n >= 10:
                # Past 10 wrong tokens this minute, this address waits (docs/http-api.md).
                assert resp.status == 429 and resp.headers["Retry-After"], (method, path)
            else:
                assert resp.status == 401, (method, path)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert_imsx(await resp.json())
    # Nothing happened behind the refusals.
    assert await proxy.services.store.list_tokens() == before
    # A vendor token is not an admin token either.
    vendor = await proxy.token()
    async with http.get(f"{proxy.admin_url}/admin/connections", headers=auth(vendor)) as resp:
        assert resp.status == (401 if "Authorization" not in headers else 429)


async def test_connections_views(admin, proxy, sandbox):
    status, data = await admin.call("GET", "/admin/connections")
    assert status == 200
    views = {c["appId"]: c for c in data["connections"]}
    assert set(views) == {"app-7", "app-8"}
    assert views["app-7"]["vendor"] == "acme" and views["app-7"]["district"] == "springfield"
    assert views["app-7"]["enabled"] is True and views["app-7"]["expires"] is None
    assert views["app-8"]["scopes"] == ["roster-core.readonly"]
    assert views["app-7"]["circuit"]
    status, one = await admin.call("GET", "/admin/connections/app-8")
    assert status == 200 and one["appId"] == "app-8" and one["vendor"] == "other"
    status, data = await admin.call("GET", "/admin/connections/nope")
    assert status == 404
    assert_imsx(data)

    status, report = await admin.call("POST", "/admin/connections/app-7/check")
    assert status == 200, report
    assert report["app"] == "app-7" and isinstance(report["ok"], bool)
    assert {c["name"] for c in report["checks"]} >= {"connection_enabled", "credentials_accepted"}
    status, _ = await admin.call("POST", "/admin/connections/nope/check")
    assert status == 404


async def test_issue_list_rotate_revoke(admin, proxy, http):
    # Issue with a ttl: listing fields plus the token, which works at once.
    status, issued = await admin.call("POST", "/admin/vendors/acme/tokens", {"ttl": "24h"})
    assert status == 201, issued
    assert set(issued) == LISTING_FIELDS | {"token"}
    first = issued["token"]
    assert TOKEN_RE.match(first) and first.startswith(issued["prefix"])
    created = dt.datetime.fromisoformat(issued["created"].replace("Z", "+00:00"))
    expires = dt.datetime.fromisoformat(issued["expires"].replace("Z", "+00:00"))
    assert abs((expires - created) - dt.timedelta(hours=24)) < dt.timedelta(seconds=1)
    assert await gateway_status(proxy, http, first) == 200
    # Without a body: never expires.
    status, forever = await admin.call("POST", "/admin/vendors/acme/tokens")
    assert status == 201 and forever["expires"] is None

    status, rows = await admin.call("GET", "/admin/vendors/acme/tokens")
    assert status == 200
    assert [r["id"] for r in rows] == [issued["id"], forever["id"]]
    assert all(set(r) == LISTING_FIELDS for r in rows)

    # Rotate with grace: the older tokens keep working for now.
    status, rotated = await admin.call("POST", "/admin/vendors/acme/tokens/rotate", {"grace": "1h"})
    assert status == 201, rotated
    assert LISTING_FIELDS | {"token"} <= set(rotated)
    assert sorted(rotated["ending"]) == sorted([issued["id"], forever["id"]])
    assert await gateway_status(proxy, http, first) == 200
    assert await gateway_status(proxy, http, rotated["token"]) == 200

    # Rotate with grace 0s: every older token ends now, on this proxy at once.
    status, latest = await admin.call("POST", "/admin/vendors/acme/tokens/rotate", {"grace": "0s"})
    assert status == 201
    for old in (first, forever["token"], rotated["token"]):
        assert await gateway_status(proxy, http, old) == 401
    assert await gateway_status(proxy, http, latest["token"]) == 200

    # Revoke one.
    status, revoked = await admin.call("DELETE", f"/admin/tokens/{latest['id']}")
    assert status == 200 and set(revoked) == LISTING_FIELDS and revoked["expires"]
    assert await gateway_status(proxy, http, latest["token"]) == 401
    status, data = await admin.call("DELETE", "/admin/tokens/zzzzzzzzzzzz")
    assert status == 404
    assert_imsx(data)

    # Revoke all of a vendor; the other vendor keeps its token.
    other = await proxy.token("other")
    _, a = await admin.call("POST", "/admin/vendors/acme/tokens")
    _, b = await admin.call("POST", "/admin/vendors/acme/tokens")
    status, data = await admin.call("DELETE", "/admin/vendors/acme/tokens")
    # (Tokens already ended by the rotation are marked revoked too: "every unrevoked token".)
    assert status == 200 and {a["id"], b["id"]} <= set(data["revoked"])
    assert latest["id"] not in data["revoked"]
    for token in (a["token"], b["token"]):
        assert await gateway_status(proxy, http, token) == 401
    async with http.get(proxy.app_url("v1p1/orgs", app="app-8"), headers=auth(other)) as resp:
        assert resp.status == 200


async def test_bad_admin_requests(admin):
    for method, path, body in (
        ("POST", "/admin/vendors/acme/tokens", {"ttl": "soon"}),
        ("POST", "/admin/vendors/acme/tokens", {"ttl": 3600}),
        ("POST", "/admin/vendors/acme/tokens", {"ttl": "1h", "vendor": "other"}),
        ("POST", "/admin/vendors/acme/tokens", b"not json"),
        ("POST", "/admin/vendors/acme/tokens", b"[1, 2]"),
        ("POST", "/admin/vendors/acme/tokens/rotate", {"grace": "later"}),
    ):
        status, data = await admin.call(method, path, body)
        assert status == 400, (path, body, data)
        assert_imsx(data)
    for method, path in (
        ("POST", "/admin/vendors/nobody/tokens"),
        ("GET", "/admin/vendors/nobody/tokens"),
        ("POST", "/admin/vendors/nobody/tokens/rotate"),
    ):
        status, data = await admin.call(method, path)
        assert status == 404, path
        assert_imsx(data)
    status, _ = await admin.call("PUT", "/admin/connections")
    assert status == 405
    status, _ = await admin.call("GET", "/admin/nothing-here")
    assert status == 404


async def test_reload_endpoint(admin, proxy, http):
    token = await proxy.token()
    status, data = await admin.call("POST", "/admin/reload")
    assert status == 200 and data["ok"] is True and data["connections"] == 2

    good = copy.deepcopy(proxy.doc)
    bad = copy.deepcopy(good)
    bad["connections"]["app-7"]["scopes"] = ["roster.readonly", "gradebook.write"]
    bad["server"]["bogus_key"] = 1
    proxy.write(bad)
    status, data = await admin.call("POST", "/admin/reload")
    assert status == 400 and data["ok"] is False
    assert any("connections.app-7.scopes[1]" in p for p in data["errors"])
    assert any("bogus_key" in p for p in data["errors"])
    assert await gateway_status(proxy, http, token) == 200  # the old config still serves

    # A valid change applies: app-7 disabled -> 403.
    good["connections"]["app-7"]["enabled"] = False
    proxy.write(good)
    status, data = await admin.call("POST", "/admin/reload")
    assert status == 200
    assert await gateway_status(proxy, http, token) == 403

    async with http.get(f"{proxy.admin_url}/metrics") as resp:
        text = await resp.text()
    assert 'oneroster_proxy_config_reloads_total{result="ok"} 2.0' in text
    assert 'oneroster_proxy_config_reloads_total{result="error"} 1.0' in text


async def test_admin_actions_are_audited_and_no_answer_holds_a_secret(admin, proxy, sandbox):
    _, issued = await admin.call("POST", "/admin/vendors/acme/tokens", {"ttl": "1h"})
    _, rotated = await admin.call("POST", "/admin/vendors/acme/tokens/rotate", {"grace": "1h"})
    await admin.call("DELETE", f"/admin/tokens/{rotated['id']}")
    await admin.call("DELETE", "/admin/vendors/acme/tokens")
    await admin.call("POST", "/admin/reload")
    for method, path in ENDPOINTS:
        if method == "GET":
            await admin.call(method, path)
    for path in ("/metrics", "/healthz", "/readyz"):
        await admin.call("GET", path, headers={})

    code, out, err = await run_cli("audit", "--config", str(proxy.config_path), "--json")
    assert code == 0, err
    events = [(e["action"], e["interface"], e["token_id"]) for e in json.loads(out)]
    assert events == [
        ("token.issue", "admin", issued["id"]),
        ("token.rotate", "admin", rotated["id"]),
        ("token.revoke", "admin", rotated["id"]),
        ("token.revoke_all", "admin", None),
        ("config.reload", "admin", None),
    ]

    secrets = [
        sandbox.key,
        sandbox.secret,
        ACME_CLIENT_SECRET,
        ACME_VENDOR_AUTH,
        JWT_KEY,
        ADMIN_TOKEN,
        *admin.shown_tokens,
        *(t.split("_", 2)[2] for t in admin.shown_tokens),
    ]
    hashes = [r.secret_hash for r in await proxy.services.store.list_tokens()]
    assert len(admin.bodies) == 11 and len(admin.shown_tokens) == 2
    for body in admin.bodies:
        for secret in [*secrets, *hashes]:
            assert secret not in body


async def test_readyz_follows_the_redis_store(sandbox, start_proxy, tmp_path, http):
    with RedisServer() as redis:
        doc = base_config(tmp_path, sandbox)
        doc["store"]["url"] = redis.url
        proxy = await start_proxy(sandbox, doc)
        token = await proxy.token()
        url = f"{proxy.admin_url}/readyz"
        async with http.get(url) as resp:
            assert resp.status == 200

        redis.stop()
        async with http.get(url) as resp:
            assert resp.status == 503
            assert (await resp.json())["status"] == "unavailable"
        async with http.get(f"{proxy.admin_url}/healthz") as resp:
            assert resp.status == 200  # alive, just not ready

        redis.start()
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            async with http.get(url) as resp:
                if resp.status == 200:
                    break
            assert asyncio.get_running_loop().time() < deadline, "not ready after redis came back"
            await asyncio.sleep(0.1)
        assert token  # (the restarted redis is empty; readiness is about reachability)


async def test_reload_names_settings_that_need_a_restart(admin, proxy, http, caplog):
    doc = copy.deepcopy(proxy.doc)
    doc["server"]["max_body"] = "1MB"
    doc["store"]["cache_ttl"] = "3s"  # applies live
    proxy.write(doc)
    with caplog.at_level(logging.WARNING, logger="oneroster_proxy"):
        status, data = await admin.call("POST", "/admin/reload")
    assert status == 200 and data["ok"] is True
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("server.max_body" in m and "restart" in m for m in warned), warned
    assert not any("cache_ttl" in m for m in warned)
    assert proxy.services.authenticator._cache.ttl == 3.0


async def test_no_admin_token_configured_closes_the_api(sandbox, start_proxy, tmp_path, http):
    doc = base_config(tmp_path, sandbox)
    del doc["admin"]["token"]
    proxy = await start_proxy(sandbox, doc)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}, ADMIN):
        async with http.get(f"{proxy.admin_url}/admin/connections", headers=headers) as resp:
            assert resp.status == 401
    async with http.get(f"{proxy.admin_url}/healthz") as resp:
        assert resp.status == 200


async def test_non_ascii_admin_authorization_is_401_not_500(proxy):
    """The admin token check must refuse any header value, not fail on one that is not
    ASCII: a 500 with aiohttp's plain-text page is neither the API's shape nor its answer."""

    async def answer(token: bytes) -> tuple[bytes, bytes]:
        raw = await raw_exchange(
            proxy.running.admin_port,
            b"GET /admin/connections HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer "
            + token
            + b"\r\nConnection: close\r\n\r\n",
        )
        head, _, body = raw.partition(b"\r\n\r\n")
        return head, body

    head, body = await answer(b"\xff\xfe")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert b"\r\nContent-Type: application/json" in head, head
    assert_imsx(json.loads(body))
    # The same refusal as any other wrong token.
    _, wrong = await answer(b"wrong-admin-token")
    assert json.loads(body) == json.loads(wrong)
