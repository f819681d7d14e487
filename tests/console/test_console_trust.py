"""The admin API and the console as an attacker would try them (THREAT_MODEL.md "Admin API and
console"): token guessing bounded per client address, sign-out kept in the store (every
replica, across restarts), outstanding intake links listed and revoked from the CLI and the
console, odd input answered 400 (never 500), and one unusable stored connection that does not
stop the background checks of the others."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import aiohttp
import pytest

from proxy.store.base import ConnectionRecord, DistrictRecord
from tests.cli.test_tokens import run_cli
from tests.console.test_http import console_config, invite
from tests.console_support import ConsoleClient
from tests.support import ADMIN_TOKEN, ProxyHarness, auth

WRONG = "wrong-admin-token-guess-0123456789"


@pytest.fixture
async def proxy(sandbox, start_proxy, tmp_path):
    return await start_proxy(sandbox, console_config(tmp_path, sandbox))


async def test_more_than_ten_wrong_admin_tokens_a_minute_get_429_the_right_one_too(proxy, caplog):
    caplog.set_level(logging.WARNING)
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(11):
            async with http.get(proxy.admin_url + "/admin/connections", headers=auth(WRONG)) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
        assert statuses == [401] * 10 + [429]
        assert retry_after is not None and 1 <= int(retry_after) <= 60
        async with http.get(proxy.admin_url + "/admin/connections", headers=auth(ADMIN_TOKEN)) as r:
            assert r.status == 429 and r.headers["Retry-After"]
    # The console's sign-in from the same address waits too, with the right token.
    console = ConsoleClient(proxy.admin_url)
    try:
        status, text, headers = await console.sign_in()
        assert status == 429 and headers["Retry-After"], text
    finally:
        await console.close()
    refusals = [r for r in caplog.records if r.name == "oneroster_proxy.admin"]
    assert len([r for r in refusals if "refused" in r.getMessage()]) >= 11
    assert all(WRONG not in r.getMessage() and WRONG not in str(r.__dict__) for r in caplog.records)


async def test_wrong_console_sign_ins_count_toward_the_same_limit(proxy):
    console = ConsoleClient(proxy.admin_url)
    try:
        statuses = [(await console.sign_in(WRONG))[0] for _ in range(11)]
        assert statuses == [401] * 10 + [429]
        status, _, _ = await console.sign_in()
        assert status == 429
    finally:
        await console.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.admin_url + "/admin/connections", headers=auth(ADMIN_TOKEN)) as r:
            assert r.status == 429


async def test_sign_out_ends_the_session_on_every_replica_and_after_a_restart(sandbox, tmp_path):
    doc = console_config(tmp_path, sandbox)
    first = await ProxyHarness(tmp_path, doc).start()
    second = await ProxyHarness(tmp_path, doc).start()  # a replica on the same store
    try:
        console = ConsoleClient(first.admin_url)
        await console.sign_in()
        keep = ConsoleClient(first.admin_url)
        await keep.sign_in()
        cookie = {c.key: c.value for c in console.http.cookie_jar}["orp_console"]
        kept = {c.key: c.value for c in keep.http.cookie_jar}["orp_console"]
        async with aiohttp.ClientSession() as http:

            async def page(harness: ProxyHarness, value: str) -> int:
                async with http.get(
                    harness.admin_url + "/console/",
                    headers={"Cookie": f"orp_console={value}"},
                    allow_redirects=False,
                ) as resp:
                    return resp.status

            assert await page(second, cookie) == 200  # one session, every replica
            status, _, _ = await console.post("/console/signout", {})
            assert status == 200  # back on the sign-in page
            assert await page(first, cookie) == 303
            assert await page(second, cookie) == 303
            await first.stop()
            await first.start()
            assert await page(first, cookie) == 303  # a restart does not bring it back
            assert await page(first, kept) == 200  # a session not signed out survives it
        await console.close()
        await keep.close()
    finally:
        await first.stop()
        await second.stop()


async def revoked_through(proxy: ProxyHarness) -> list[str]:
    """The interfaces of the audit trail's ``connection.invite_revoke`` events, oldest first."""
    events = await proxy.services.store.list_audit()
    return [e.interface for e in events if e.action == "connection.invite_revoke"]


@pytest.mark.slow  # the CLI in subprocesses
async def test_invites_cli_lists_without_the_link_and_revokes(proxy):
    path = await invite(proxy, "app-cli", district_name="cli-district")
    token = path.rsplit("/", 1)[1]
    config = str(proxy.config_path)
    code, out, err = await run_cli("invites", "list", "--config", config)
    assert code == 0, err
    assert "app-cli" in out and "acme" in out and "cli-district" in out and token not in out
    code, out, err = await run_cli("invites", "list", "--config", config, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["app_id"] for r in rows] == ["app-cli"]
    assert set(rows[0]) == {"app_id", "vendor", "district_name", "scopes", "created", "expires"}
    code, out, err = await run_cli("invites", "revoke", "app-cli", "--config", config)
    assert code == 0, err
    code, out, err = await run_cli("invites", "revoke", "app-cli", "--config", config)
    assert code != 0 and "app-cli" in err
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + path) as resp:
            assert resp.status == 404
    assert await revoked_through(proxy) == ["cli"]


async def test_the_console_lists_outstanding_links_and_revokes_one(proxy):
    path = await invite(proxy, "app-con", district_name="con-district")
    console = ConsoleClient(proxy.admin_url)
    try:
        await console.sign_in()
        status, text, _ = await console.get("/console/")
        assert status == 200 and 'data-invite="app-con"' in text and ">Revoke</button>" in text
        assert path.rsplit("/", 1)[1] not in text
        status, text, _ = await console.post("/console/invites/app-con/revoke", {})
        assert status == 200 and 'data-invite="app-con"' not in text
    finally:
        await console.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + path) as resp:
            assert resp.status == 404
    assert await revoked_through(proxy) == ["console"]


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("POST", "/admin/vendors/acme/tokens", b'{"ttl": "9999999999999d"}', "ttl"),
        ("POST", "/admin/vendors/acme/tokens/rotate", b'{"grace": "9999999999999d"}', "grace"),
        (
            "POST",
            "/admin/connections/app-x/invite",
            b'{"vendor": "acme", "ttl": "9999999999999d"}',
            "ttl",
        ),
        (
            "POST",
            "/admin/districts",
            b'{"name": "d1", "base_url": "https://a.example", "max_connections": 1'
            + b"0" * 40
            + b"}",
            "max_connections",
        ),
        (
            "POST",
            "/admin/districts",
            b'{"name": "d2", "base_url": "https://a.example", "max_wait": "9999999999999d"}',
            "max_wait",
        ),
        ("POST", "/admin/districts", b'{"name": "d3", "base_url": "http://[::1"}', "base_url"),
        (
            "POST",
            "/admin/districts",
            b'{"name": "d4", "base_url": "http://a.example:70000"}',
            "base_url",
        ),
        (
            "POST",
            "/admin/districts",
            b'{"name": "d5", "base_url": "http://user:pw@a.example"}',
            "base_url",
        ),
        (
            "POST",
            "/admin/districts",
            b'{"name": "d6", "base_url": "https://a.example/\\ud800"}',
            "base_url",
        ),
        ("POST", "/admin/vendors/acme/tokens", b'{"ttl": "\\udc00"}', "ttl"),
        ("POST", "/admin/districts", b"[" * 100_000, "body"),
        ("POST", "/admin/districts", b'{"a":' * 40 + b"1" + b"}" * 40, "body"),
        ("POST", "/admin/vendors/acme/tokens", b'{"a":' * 40 + b"1" + b"}" * 40, "body"),
        ("POST", "/admin/districts", b'{"name": "' + b"a" * 1_100_000 + b'"}', "body"),
    ],
)
async def test_odd_admin_input_is_400_naming_the_field(proxy, method, path, raw, field):
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            proxy.admin_url + path,
            data=raw,
            headers={**auth(ADMIN_TOKEN), "Content-Type": "application/json"},
        ) as resp:
            text = await resp.text()
            assert resp.status == 400, text
    assert field in text


async def test_odd_console_input_is_400_never_500(proxy):
    console = ConsoleClient(proxy.admin_url)
    try:
        await console.sign_in()
        for path, data in [
            ("/console/vendors/acme/issue", {"ttl": "9999999999999d"}),
            ("/console/vendors/acme/rotate", {"grace": "9999999999999d"}),
            ("/console/invite", {"app_id": "app-z", "vendor": "acme", "ttl": "9999999999999d"}),
        ]:
            await console.get("/console/")
            status, text, _ = await console.post(path, data)
            assert status == 400, (path, text)
        # Text that is not valid Unicode (a lone surrogate, percent-encoded).
        for raw in (b"app_id=app-%ED%A0%80&vendor=acme",):
            await console.get("/console/")
            async with console.http.post(
                console.base + "/console/invite",
                data=b"csrf=" + console.csrf.encode() + b"&" + raw,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as resp:
                assert resp.status == 400, await resp.text()
        await console.get("/console/")
        status, text, _ = await console.post("/console/invite", {"app_id": "a" * 1_100_000})
        assert status == 400, text[:300]
    finally:
        await console.close()


async def test_a_stored_connection_that_cannot_be_used_fails_alone(proxy, sandbox):
    from proxy.check.background import BackgroundChecks
    from proxy.store.crypto import Binding, SecretBox

    store = proxy.services.store
    now = datetime.now(UTC)
    # Written around the proxy's own checks, as a damaged store or an older version could.
    broken = DistrictRecord(name="broken", base_url="http://[::1", created=now, updated=now)
    await store.add_district(broken)
    box = SecretBox(proxy.services.runtime.current.config.store.secret_keys)
    await store.add_connection(
        ConnectionRecord(
            app_id="app-broken",
            vendor="acme",
            district="broken",
            key="k",
            secret=box.seal(Binding.of("app-broken", "k", broken), "s"),
            scopes=("roster-core.readonly",),
            created=now,
            updated=now,
        ),
        district_in_store=True,
    )
    await store.add_district(
        DistrictRecord(name="unsealed", base_url=sandbox.base_url, created=now, updated=now)
    )
    await store.add_connection(
        ConnectionRecord(
            app_id="app-unsealed",
            vendor="acme",
            district="unsealed",
            key="k",
            secret="not-a-sealed-secret",
            scopes=("roster-core.readonly",),
            created=now,
            updated=now,
        ),
        district_in_store=True,
    )
    checked = await BackgroundChecks(proxy.services, interval=3600).round()
    assert checked is not None and {"app-7", "app-8", "app-9"} <= set(checked)
    for app in ("app-7", "app-8"):
        assert (await store.list_check_results(app))[0].ok
    unsealed = await store.list_check_results("app-unsealed")
    assert unsealed and not unsealed[0].ok
    token = await proxy.token("acme")
    async with aiohttp.ClientSession() as http:
        for app in ("app-broken", "app-unsealed"):
            async with http.get(proxy.app_url("v1p1/orgs?limit=1", app), headers=auth(token)) as r:
                assert 400 <= r.status < 500 or r.status == 503, (app, r.status)
        async with http.get(proxy.app_url("v1p1/orgs?limit=1"), headers=auth(token)) as r:
            assert r.status == 200
        for app in ("app-broken", "app-unsealed"):
            async with http.post(
                f"{proxy.admin_url}/admin/connections/{app}/check", headers=auth(ADMIN_TOKEN)
            ) as r:
                assert r.status in (404, 503), (app, r.status, await r.text())
    # The console's board still lists every other connection.
    console = ConsoleClient(proxy.admin_url)
    try:
        await console.sign_in()
        status, text, _ = await console.get("/console/")
        assert status == 200 and 'data-app="app-7"' in text
    finally:
        await console.close()
