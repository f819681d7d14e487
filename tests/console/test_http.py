"""The console and the intake page over plain HTTP (docs/http-api.md):
cookie flags, CSRF refusals, the CSP header, escaping of everything an operator or a district
can type, and no secret on any page. The real browser walks are in test_browser.py."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from typing import Any

import aiohttp
import pytest

from proxy.connections.invites import hash_token
from proxy.scopes import SCOPE_ORDER
from tests.console_support import CSRF_RE, ConsoleClient
from tests.support import ADMIN_TOKEN, auth, base_config

SCRIPT = "<script>alert(1)</script>"
STORE_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def console_config(tmp_path: Any, sandbox: Any, **server: Any) -> dict[str, Any]:
    doc = base_config(tmp_path, sandbox, **server)
    doc["store"]["secret_keys"] = [STORE_KEY]
    doc["server"]["intake_private_networks"] = True  # the sandbox district is on loopback
    doc["connections"]["app-9"] = {**doc["connections"]["app-8"], "secret": "wrong-secret-xyz"}
    return doc


@pytest.fixture
async def proxy(sandbox, start_proxy, tmp_path):
    return await start_proxy(sandbox, console_config(tmp_path, sandbox))


@pytest.fixture
async def console(proxy):
    client = ConsoleClient(proxy.admin_url)
    yield client
    await client.close()


async def invite(proxy: Any, app_id: str = "app-new", **body: Any) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            f"{proxy.admin_url}/admin/connections/{app_id}/invite",
            json={"vendor": "acme", "scopes": ["roster-core.readonly"], **body},
            headers=auth(ADMIN_TOKEN),
        ) as resp:
            data = await resp.json()
            assert resp.status == 201, data
    url = data["url"]
    assert re.fullmatch(r"http://[^/]+/intake/[A-Za-z0-9_-]{43}", url)
    return "/intake/" + url.rsplit("/", 1)[1]


def set_cookies(headers: Any) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in headers.getall("Set-Cookie", [])}


async def test_session_cookie_is_httponly_strict_and_scoped(console):
    await console.get("/console/signin")
    async with console.http.post(
        console.base + "/console/signin",
        data={"token": ADMIN_TOKEN, "csrf": console.csrf},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/"
        cookie = set_cookies(resp.headers)["orp_console"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert "Secure" not in cookie  # public_url is not https here
    assert ADMIN_TOKEN not in cookie
    status, text, _ = await console.get("/console/")
    assert status == 200 and 'data-app="app-7"' in text


async def test_secure_cookie_behind_https(sandbox, start_proxy, tmp_path):
    proxy = await start_proxy(
        sandbox, console_config(tmp_path, sandbox, public_url="https://proxy.example")
    )
    client = ConsoleClient(proxy.admin_url)
    try:
        _, _, headers = await client.get("/console/signin")
        # Behind https the cookies are Secure and carry the __Host- prefix (Path=/, no Domain),
        # so no sibling host can set or shadow them.
        csrf_cookie = set_cookies(headers)["__Host-orp_console_csrf"]
        assert "Secure" in csrf_cookie and "Path=/;" in csrf_cookie + ";"
        assert "Domain" not in csrf_cookie
        # A client keeps Secure cookies for https; this test speaks http, so it sends it back.
        async with client.http.post(
            client.base + "/console/signin",
            data={"token": ADMIN_TOKEN, "csrf": client.csrf},
            headers={"Cookie": f"__Host-orp_console_csrf={client.csrf}"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            session_cookie = set_cookies(resp.headers)["__Host-orp_console"]
            assert "Secure" in session_cookie and "Path=/;" in session_cookie + ";"
            assert "Domain" not in session_cookie
    finally:
        await client.close()


async def test_wrong_admin_token_and_no_session(console):
    status, text, _ = await console.sign_in("not-the-admin-token")
    assert status == 401 and "That is not the admin token." in text
    async with console.http.get(console.base + "/console/", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/signin"
    # The API keeps its bearer check; a console session is no API credential.
    await console.sign_in()
    async with console.http.get(console.base + "/admin/connections") as resp:
        assert resp.status == 401


async def test_forms_without_or_with_a_wrong_csrf_token_are_403(console, proxy):
    await console.get("/console/signin")
    status, _, _ = await console.post("/console/signin", {"token": ADMIN_TOKEN}, csrf=False)
    assert status == 403
    await console.sign_in()
    good = console.csrf
    for path, data in [
        ("/console/connections/app-7/check", {}),
        ("/console/vendors/acme/issue", {"ttl": "1h"}),
        ("/console/signout", {}),
        ("/console/invite", {"app_id": "app-x", "vendor": "acme"}),
    ]:
        status, _, _ = await console.post(path, data, csrf=False)
        assert status == 403, path
        status, _, _ = await console.post(path, {**data, "csrf": good[:-1] + "x"}, csrf=False)
        assert status == 403, path
    assert await proxy.services.store.list_tokens("acme") == []  # nothing was issued

    path = await invite(proxy)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(proxy.url + path) as resp:
            assert resp.status == 200
        async with http.post(proxy.url + path, data={"base_url": "http://x"}) as resp:
            assert resp.status == 403


async def test_every_page_carries_the_csp_header(console, proxy):
    pages = ["/console/signin"]
    _, _, headers = await console.get("/console/signin")
    await console.sign_in()
    pages += [
        "/console/",
        "/console/connections/app-7",
        "/console/vendors/acme",
        "/console/audit",
        "/console/connections/nope",
        "/console/static/console.css",
    ]
    for path in pages:
        status, _, headers = await console.get(path)
        assert (
            headers["Content-Security-Policy"]
            == "default-src 'self'; form-action 'self'; base-uri 'none'"
        ), path
        assert headers["X-Frame-Options"] == "DENY"
    status, text, _ = await console.get("/console/connections/nope")
    assert status == 404 and "<html" in text
    intake = await invite(proxy)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for path in (intake, "/intake/" + "A" * 43, "/intake/static/console.css"):
            async with http.get(proxy.url + path) as resp:
                assert (
                    resp.headers["Content-Security-Policy"]
                    == "default-src 'self'; form-action 'self'; base-uri 'none'"
                ), path
                assert resp.headers["Referrer-Policy"] == "no-referrer"
    # Nothing on any page loads from elsewhere.
    for text in console.pages:
        for ref in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert ref.startswith("/"), ref


async def test_script_in_every_field_is_escaped(console, proxy, sandbox):
    await console.sign_in()
    pages = []
    # Operator fields: invite (appId, district name, TTL), token TTL, grace, audit filters.
    for data in [
        {"app_id": SCRIPT, "vendor": "acme", "ttl": "7d"},
        {"app_id": "app-z", "vendor": "acme", "district_name": SCRIPT, "ttl": "7d"},
        {"app_id": "app-z", "vendor": "acme", "ttl": SCRIPT},
        {"app_id": "app-z", "vendor": SCRIPT, "ttl": "7d"},
        {"app_id": "app-z", "vendor": "acme", "scopes": SCRIPT, "ttl": "7d"},
    ]:
        status, text, _ = await console.post("/console/invite", data)
        assert status in (400, 404), text
        pages.append(text)
    for path, data in [
        ("/console/vendors/acme/issue", {"ttl": SCRIPT}),
        ("/console/vendors/acme/rotate", {"grace": SCRIPT}),
        ("/console/vendors/acme/revoke", {"token_id": SCRIPT}),
        ("/console/connections/app-7/invite", {"ttl": SCRIPT}),
        ("/console/connections/app-7/renew", {"key": SCRIPT, "secret": SCRIPT}),
    ]:
        status, text, _ = await console.post(path, data)
        assert status in (400, 404, 409), (path, text)
        pages.append(text)
    for path in (
        f"/console/audit?action={SCRIPT}&app={SCRIPT}",
        f"/console/?vendor={SCRIPT}&failing=1",
        "/console/connections/%3Cscript%3E",
        "/console/vendors/%3Cscript%3E",
    ):
        _, text, _ = await console.get(path)
        pages.append(text)
    # District fields: everything on the intake form.
    intake = await invite(proxy, "app-xss", district_name="xss-district")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(proxy.url + intake) as resp:
            csrf = CSRF_RE.search(await resp.text()).group(1)  # type: ignore[union-attr]
        form = {
            "csrf": csrf,
            "base_url": f"{sandbox.base_url}/{SCRIPT}",
            "versions": SCRIPT,
            "auth": SCRIPT,
            "token_url": SCRIPT,
            "key": SCRIPT,
            "secret": SCRIPT,
            "scopes": SCRIPT,
        }
        async with http.post(proxy.url + intake, data=form) as resp:
            text = await resp.text()
            assert resp.status == 400
        pages.append(text)
        form.update(auth="oauth1", versions="v1p1", scopes="roster-core.readonly")
        async with http.get(proxy.url + intake) as resp:
            form["csrf"] = CSRF_RE.search(await resp.text()).group(1)  # type: ignore[union-attr]
        async with http.post(proxy.url + intake, data=form) as resp:
            text = await resp.text()
            assert resp.status == 422 and 'data-item="credentials_accepted"' in text
        pages.append(text)
    _, text, _ = await console.get("/console/audit")
    pages.append(text)
    for text in pages:
        assert "<script" not in text.lower(), text
    assert any("&lt;script&gt;" in text for text in pages)
    # The secret field never comes back, not even escaped.
    assert not any('name="secret" value' in text for text in pages)


async def test_no_secret_on_any_page(console, proxy, sandbox):
    await console.sign_in()
    await console.post("/console/connections/app-9/check", {})
    await console.post("/console/connections/app-7/check", {})
    _, issued_page, _ = await console.post("/console/vendors/acme/issue", {"ttl": "1h"})
    new_token = re.search(r'id="new-token">([^<]+)<', issued_page).group(1)  # type: ignore[union-attr]
    for path in (
        "/console/",
        "/console/connections/app-7",
        "/console/connections/app-9",
        "/console/vendors/acme",
        "/console/vendors/other",
        "/console/audit",
    ):
        await console.get(path)
    secrets = [sandbox.secret, "wrong-secret-xyz", ADMIN_TOKEN, STORE_KEY]
    for text in console.pages:
        for secret in secrets:
            assert secret not in text
    shown = [t for t in console.pages if new_token in t]
    assert shown == [issued_page]  # the new token once, on the page that issued it


async def connect_via_intake(proxy: Any, sandbox: Any, app_id: str) -> None:
    """District IT's side, over plain HTTP: open the link, submit the right values."""
    path = await invite(proxy, app_id, district_name=f"{app_id}-district", scopes=list(SCOPE_ORDER))
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(proxy.url + path) as resp:
            csrf = CSRF_RE.search(await resp.text()).group(1)  # type: ignore[union-attr]
        form = [
            ("csrf", csrf),
            ("base_url", sandbox.base_url),
            ("versions", "v1p1"),
            ("versions", "v1p2"),
            ("auth", "oauth1"),
            ("key", sandbox.key),
            ("secret", sandbox.secret),
            *(("scopes", s) for s in SCOPE_ORDER),
        ]
        async with http.post(proxy.url + path, data=form) as resp:
            text = await resp.text()
            assert resp.status == 200 and "<h1>Connected</h1>" in text, text


async def test_store_connections_on_the_board_enable_disable_renew(console, proxy, sandbox):
    await connect_via_intake(proxy, sandbox, "app-s")
    token = await proxy.token("acme")

    async def gateway() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.get(proxy.app_url("v1p1/orgs", "app-s"), headers=auth(token)) as r:
                return r.status

    assert await gateway() == 200
    await console.sign_in()
    _, board, _ = await console.get("/console/")
    row = re.search(r'<tr data-app="app-s">(.*?)</tr>', board, re.S)
    assert row is not None and "store" in row.group(1) and "app-s-district" in row.group(1)

    status, page, _ = await console.post("/console/connections/app-s/disable", {})
    assert status == 200 and "Connection disabled." in page
    assert await gateway() == 403
    status, page, _ = await console.post("/console/connections/app-s/enable", {})
    assert status == 200 and await gateway() == 200

    # Renew with credentials the district does not know: in use at once, so requests fail.
    status, _, _ = await console.post(
        "/console/connections/app-s/renew", {"key": sandbox.key, "secret": "retired-secret"}
    )
    assert status == 200 and await gateway() == 401
    status, page, _ = await console.post("/console/connections/app-s/check", {})
    assert 'data-item="credentials_accepted"' in page and "key/secret wrong" in page
    await console.post(
        "/console/connections/app-s/renew", {"key": sandbox.key, "secret": sandbox.secret}
    )
    assert await gateway() == 200

    # A config connection is changed in the config file, not here.
    status, page, _ = await console.post("/console/connections/app-7/disable", {})
    assert status == 409 and "config file" in page
    for text in console.pages:
        assert sandbox.secret not in text and "retired-secret" not in text
    actions = {e.action for e in await proxy.services.store.list_audit()}
    assert {"connection.invite", "connection.intake", "connection.update"} <= actions
    assert "connection.renew" in actions


async def test_intake_links_are_single_use_rate_limited_and_bound_to_their_appid(proxy, sandbox):
    await connect_via_intake(proxy, sandbox, "app-once")
    # Spent: the same 404 as an unknown link.
    async with aiohttp.ClientSession() as http:
        for path in ("/intake/" + "B" * 43, "/intake/short"):
            async with http.get(proxy.url + path) as resp:
                assert resp.status == 404
    # A config connection's appId, or a district another connection uses, gets no link.
    async with aiohttp.ClientSession() as http:
        for app_id, body in [
            ("app-7", {}),
            ("app-other", {"district_name": "app-once-district"}),
            ("app-other2", {"district_name": "springfield"}),
        ]:
            async with http.post(
                f"{proxy.admin_url}/admin/connections/{app_id}/invite",
                json={"vendor": "acme", **body},
                headers=auth(ADMIN_TOKEN),
            ) as resp:
                assert resp.status == 409, (app_id, await resp.text())

    path = await invite(proxy, "app-limited")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        statuses = []
        for _ in range(11):
            async with http.get(proxy.url + path) as resp:
                csrf = CSRF_RE.search(await resp.text()).group(1)  # type: ignore[union-attr]
            async with http.post(
                proxy.url + path, data={"csrf": csrf, "base_url": "not a url"}
            ) as resp:
                statuses.append(resp.status)
                retry_after = resp.headers.get("Retry-After")
        assert statuses == [400] * 10 + [429]
        assert retry_after is not None and int(retry_after) > 0
    invite_record = await proxy.services.store.get_invite(hash_token(path.rsplit("/", 1)[1]))
    assert invite_record is not None and invite_record.spent is None


async def test_background_checks_and_the_audit_page_cover_store_connections(
    console, proxy, sandbox
):
    from proxy.check.background import BackgroundChecks

    await connect_via_intake(proxy, sandbox, "app-bg")
    checked = await BackgroundChecks(proxy.services, interval=0.0).round()
    assert checked is not None and "app-bg" in checked and "app-7" in checked
    last = await proxy.services.store.list_check_results("app-bg")
    # The intake's passing run, then the round's.
    assert len(last) == 2 and all(r.ok for r in last)

    await console.sign_in()
    await console.post("/console/vendors/acme/issue", {"ttl": "1h"})
    _, page, _ = await console.get("/console/audit")
    actions = re.findall(r'<td data-label="Action"><code>([^<]+)</code>', page)
    # Newest first: the token issued last is on top, the invite that began it all below.
    assert actions[0] == "token.issue"
    assert actions.index("connection.intake") < actions.index("connection.invite")
    _, page, _ = await console.get("/console/audit?action=connection.intake")
    assert set(re.findall(r'<td data-label="Action"><code>([^<]+)</code>', page)) == {
        "connection.intake"
    }
    _, page, _ = await console.get("/console/audit?app=app-bg")
    apps = re.findall(r'<td data-label="appId">([^<]*)</td>', page)
    assert apps and set(apps) == {"app-bg"}
    _, page, _ = await console.get("/console/audit?app=nobody")
    assert "Nothing recorded that matches." in page


async def test_signed_out_and_forged_sessions_are_refused(console, proxy):
    await console.sign_in()
    cookie = next(c.value for c in console.http.cookie_jar if c.key == "orp_console")
    expires, nonce, mac = cookie.split(".")
    await console.post("/console/signout", {})
    async with aiohttp.ClientSession() as http:
        for value in (
            cookie,  # signed out
            f"{int(expires) + 3600}.{nonce}.{mac}",  # a longer life it was never given
            f"{expires}.{nonce}x.{mac}",
            "garbage",
        ):
            async with http.get(
                proxy.admin_url + "/console/",
                headers={"Cookie": f"orp_console={value}"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/console/signin"


async def test_expired_link_and_wrong_csrf_on_the_intake_page(proxy):
    path = await invite(proxy, "app-short", ttl="1s")
    fresh = await invite(proxy, "app-csrf")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(proxy.url + fresh) as resp:
            assert resp.status == 200
            csrf = CSRF_RE.search(await resp.text()).group(1)  # type: ignore[union-attr]
        async with http.post(proxy.url + fresh, data={"csrf": csrf + "x"}) as resp:
            assert resp.status == 403
        async with http.post(proxy.url + fresh, data={"csrf": csrf}) as resp:
            assert resp.status == 400  # the right token gets as far as the form's checks
        await asyncio.sleep(1.2)  # past the link's one-second life
        async with http.get(proxy.url + path) as resp:
            assert resp.status == 404
            assert "unknown, expired or already used" in await resp.text()


async def test_an_infinite_campus_district_connects_with_grade_book_sync(start_proxy, tmp_path):
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    campus = await start_sandbox(SandboxOptions(profile="infinite-campus"))
    try:
        proxy = await start_proxy(campus, console_config(tmp_path, campus))
        assert campus.key.startswith("InfiniteCampus_")
        await connect_via_intake(proxy, campus, "app-ic")
        district = await proxy.services.store.get_district("app-ic-district")
        # The key's shape says Infinite Campus: gradebook calls carry the vendor's header.
        assert district is not None and district.vendor_authorization
        report = (await proxy.services.store.list_check_results("app-ic"))[0].document
        statuses = {c["name"]: c["status"] for c in report["checks"]}
        # The intake never sent the vendor's header: judged by the operator's first check.
        assert statuses["vendor_authorization"] == "skip"
        assert statuses["infinite_campus_key"] == "ok"
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{proxy.admin_url}/admin/connections/app-ic/check", headers=auth(ADMIN_TOKEN)
            ) as resp:
                checked = await resp.json()
        statuses = {c["name"]: c["status"] for c in checked["checks"]}
        assert statuses["vendor_authorization"] == "ok", checked
        token = await proxy.token("acme")
        async with aiohttp.ClientSession() as http:
            url = proxy.app_url("v1p1/lineItems?limit=1", "app-ic")
            async with http.get(url, headers=auth(token)) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await campus.close()


async def test_the_board_shows_district_refusals_apart_from_errors(console, proxy, sandbox):
    # docs/http-api.md "Console": the last hour's requests, the share the district refused
    # (its own 401 and 403) and the share of errors (5xx), apart. app-9's secret is wrong, so
    # the district refuses every request with 401: that is not "0% errors" and nothing else.
    token = await proxy.token("other")
    async with aiohttp.ClientSession() as http:

        async def status(path: str, app: str) -> int:
            async with http.get(proxy.app_url(path, app), headers=auth(token)) as resp:
                return resp.status

        assert [await status("v1p1/orgs", "app-9") for _ in range(2)] == [401, 401]
        assert await status("v1p1/orgs", "app-8") == 200
        assert await status("v1p1/schools/x/classes", "app-8") == 403  # the proxy's own
        sandbox.options.faults.status_503_retry_after = 120
        sandbox.options.faults.status_503_count = 1
        assert await status("v1p1/orgs", "app-8") == 503
    await console.sign_in()
    _, board, _ = await console.get("/console/")

    def hour(app: str) -> str:
        row = re.search(rf'<tr data-app="{app}">(.*?)</tr>', board, re.S)
        assert row is not None
        cell = re.search(r'data-label="Last hour"[^>]*>(.*?)</td>', row.group(1), re.S)
        assert cell is not None
        return re.sub(r"<[^>]+>", "", cell.group(1))

    assert "2 req" in hour("app-9") and "100% refused by the district" in hour("app-9")
    assert "0% errors" in hour("app-9")
    assert "3 req" in hour("app-8") and "0% refused by the district" in hour("app-8")
    assert "33% errors" in hour("app-8")


async def test_invite_is_offered_for_store_connections_only(console, proxy, sandbox):
    # A config connection's invite could only answer 409: its page does not offer one.
    await connect_via_intake(proxy, sandbox, "app-s")
    await console.sign_in()
    _, config_page, _ = await console.get("/console/connections/app-7")
    assert "/console/connections/app-7/invite" not in config_page
    assert ">Invite</button>" not in config_page
    _, store_page, _ = await console.get("/console/connections/app-s")
    assert "/console/connections/app-s/invite" in store_page
    _, board, _ = await console.get("/console/")
    assert 'action="/console/invite"' in board  # a new appId is still invited from the board


async def test_a_disabled_store_connection_is_enabled_by_a_command_not_a_config_key(
    console, proxy, sandbox
):
    await connect_via_intake(proxy, sandbox, "app-s")
    await console.sign_in()
    await console.post("/console/connections/app-s/disable", {})
    _, page, _ = await console.post("/console/connections/app-s/check", {})
    item = re.search(r'<li[^>]*data-item="connection_enabled"(.*?)</li>', page, re.S)
    assert item is not None and "fail" in item.group(0).split(">")[0], page
    assert "connections update app-s --enable" in item.group(0)
    assert "enabled = false" not in item.group(0)


async def test_an_intake_404_is_not_the_console_and_favicon_is_no_refusal(proxy, http):
    async with http.get(proxy.url + "/intake/" + "x" * 43) as resp:
        page = await resp.text()
        assert resp.status == 404
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    brand = re.search(r'class="brand">(.*?)</span>', page, re.S)
    assert title and brand and "console" not in title.group(1) + brand.group(1), page
    assert "intake" in brand.group(1)
    # A browser showing the intake page (or the console) asks for /favicon.ico: never a 401,
    # counted or logged as a refused request.
    for base in (proxy.url, proxy.admin_url):
        async with http.get(base + "/favicon.ico") as resp:
            assert resp.status == 404
    async with http.get(proxy.admin_url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'code="401"' not in metrics and 'code="404"' not in metrics


async def test_the_audit_page_reads_durations_and_a_second_revoke_says_so(console, proxy):
    await console.sign_in()
    await console.post("/console/vendors/acme/issue", {"ttl": ""})
    _, page, _ = await console.post("/console/vendors/acme/rotate", {"grace": "5s"})
    token_id = re.search(r'id="new-token">orp_([a-z0-9]{12})_', page)
    assert token_id is not None
    revoked = {"token_id": token_id.group(1)}
    _, first, _ = await console.post("/console/vendors/acme/revoke", revoked)
    assert f"Token {token_id.group(1)} revoked." in first
    _, second, _ = await console.post("/console/vendors/acme/revoke", revoked)
    assert "already revoked" in second
    events = await proxy.services.store.list_audit()
    assert [e.action for e in events].count("token.revoke") == 1
    _, audit, _ = await console.get("/console/audit")
    assert "grace=5s" in audit and "ttl=-" in audit
    assert "None" not in audit and "_seconds" not in audit


async def test_the_console_shows_the_district_window_or_pause(sandbox, start_proxy, tmp_path):
    """docs/configuration.md "SIS courtesy": the connection page says what holds now (the
    injected wall clock), the board marks a paused district."""
    from datetime import UTC, datetime

    doc = console_config(tmp_path, sandbox)
    doc["districts"]["springfield"].update(
        timezone="America/Chicago",
        max_connections=5,
        windows=[{"days": "mon-fri", "from": "07:00", "to": "16:00", "max_connections": 1}],
        pauses=[{"from": "2027-06-20", "to": "2027-08-01", "reason": "summer rollover"}],
    )
    proxy = await start_proxy(sandbox, doc)
    limits = proxy.services.limits
    console = ConsoleClient(proxy.admin_url)
    try:
        await console.sign_in()
        limits.wall = lambda: datetime(2027, 3, 1, 14, tzinfo=UTC).timestamp()  # Mon 08:00
        _, page, _ = await console.get("/console/connections/app-7")
        shown = re.search(r'<td id="courtesy">(.*?)</td>', page)
        assert shown is not None
        assert shown.group(1) == "peak window mon-fri 07:00-16:00: 1 at once (America/Chicago)"
        _, board, _ = await console.get("/console/")
        assert "data-paused" not in board
        limits.wall = lambda: datetime(2027, 7, 4, 17, tzinfo=UTC).timestamp()
        _, page, _ = await console.get("/console/connections/app-7")
        shown = re.search(r'<td id="courtesy">(.*?)</td>', page)
        assert shown is not None
        assert shown.group(1) == "paused until 2027-08-01 inclusive (summer rollover)"
        _, board, _ = await console.get("/console/")
        row = re.search(r'<tr data-app="app-7">(.*?)</tr>', board, re.S)
        assert row is not None and 'data-paused="1"' in row.group(1)
    finally:
        await console.close()
