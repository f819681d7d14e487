"""The intake link as an attacker holding one would use it (THREAT_MODEL.md "The intake link"),
over plain HTTP against the real proxy, the real sandbox and small loopback servers that play
a hostile "district": no takeover of another connection's district, no scope beyond the
invite, no vendor-wide secret sent, typed URLs checked and pinned, no far-end bytes shown but a
OneRoster ``imsx_description``, no 500, a budget only real form posts spend, and links that can
be listed and revoked."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.connections.addresses import PinnedResolver
from tests.console.test_http import CSRF_RE, console_config, invite
from tests.support import ACME_VENDOR_AUTH, ADMIN_TOKEN, auth, serve_on_loopback

IC_KEY = "InfiniteCampus_AwesomeLMS_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture
async def proxy(sandbox, start_proxy, tmp_path):
    """Loopback districts allowed (the sandbox, the hostile servers below)."""
    return await start_proxy(sandbox, console_config(tmp_path, sandbox))


@pytest.fixture
async def public_proxy(sandbox, start_proxy, tmp_path):
    """The default: intake reaches public addresses only."""
    doc = console_config(tmp_path, sandbox)
    del doc["server"]["intake_private_networks"]
    return await start_proxy(sandbox, doc)


class Recorder:
    """A hostile "district" on loopback: answers ``status`` with ``body`` to everything and
    keeps every request's headers."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status, self.body = status, body
        self.seen: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append({k.lower(): v for k, v in request.headers.items()})
        body = self.body if self.body is not None else {"users": [{"sourcedId": "u1"}]}
        return web.json_response(body, status=self.status)

    async def __aenter__(self) -> Recorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner, port = await serve_on_loopback(app)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def submit(
    proxy: Any, path: str, fields: list[tuple[str, str]], *, csrf: bool = True
) -> tuple[int, str]:
    """District IT's browser: open the link, post the form with its CSRF token."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(proxy.url + path) as resp:
            token = CSRF_RE.search(await resp.text()).group(1)  # type: ignore[union-attr]
        form = ([("csrf", token)] if csrf else []) + fields
        async with http.post(proxy.url + path, data=form) as resp:
            return resp.status, await resp.text()


def form(base_url: str, key: str = "k", secret: str = "s", *scopes: str, **more: str) -> list:
    fields = [
        ("base_url", base_url),
        ("versions", "v1p1"),
        ("versions", "v1p2"),
        ("auth", more.pop("auth", "oauth1")),
        ("key", key),
        ("secret", secret),
    ]
    fields += [("scopes", s) for s in scopes or ("roster-core.readonly",)]
    fields += list(more.items())
    return fields


async def admin(proxy: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, proxy.admin_url + path, json=body, headers=auth(ADMIN_TOKEN)
        ) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text.strip() else None)


# -- 1: another connection's district ---------------------------------------------------------


async def test_a_second_invite_naming_a_district_already_named_is_409(proxy):
    await invite(proxy, "app-a", district_name="shared")
    status, body = await admin(
        proxy,
        "POST",
        "/admin/connections/app-b/invite",
        {"vendor": "other", "district_name": "shared"},
    )
    assert status == 409 and "district_name" in body["errors"][0], body


async def test_a_link_spent_after_another_connection_took_its_district_changes_nothing(
    proxy, sandbox
):
    path = await invite(proxy, "app-a", district_name="shared")
    # Meanwhile the operator gives the district to another vendor's connection.
    status, body = await admin(
        proxy, "POST", "/admin/districts", {"name": "shared", "base_url": sandbox.base_url}
    )
    assert status == 201, body
    status, body = await admin(
        proxy,
        "POST",
        "/admin/connections",
        {
            "app_id": "app-b",
            "vendor": "other",
            "district": "shared",
            "key": sandbox.key,
            "secret": sandbox.secret,
            "scopes": ["roster-core.readonly"],
        },
    )
    assert status == 201, body
    async with Recorder() as evil:
        # The link holder's own server, answering like a district.
        status, text = await submit(proxy, path, form(evil.url))
    assert status == 409, text
    assert "<h1>Connected</h1>" not in text
    district = await proxy.services.store.get_district("shared")
    assert district is not None and district.base_url == sandbox.base_url
    assert await proxy.services.store.get_connection("app-a") is None
    token = await proxy.token("other")
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.app_url("v1p1/orgs?limit=1", "app-b"), headers=auth(token)) as r:
            assert r.status == 200


# -- 4: scopes ---------------------------------------------------------------------------------


async def test_scopes_beyond_the_invite_are_400_naming_them_and_not_saved(proxy, sandbox):
    path = await invite(proxy, "app-s", scopes=["roster-core.readonly"])
    status, text = await submit(
        proxy,
        path,
        form(
            sandbox.base_url,
            sandbox.key,
            sandbox.secret,
            "roster-core.readonly",
            "gradebook.createput",
        ),
    )
    assert status == 400, text
    assert "gradebook.createput" in text and "not part of this invitation" in text
    assert await proxy.services.store.get_connection("app-s") is None


# -- 2: the vendor's Infinite Campus secret ----------------------------------------------------


async def test_the_vendors_header_never_leaves_during_an_intake(proxy):
    path = await invite(proxy, "app-ic", scopes=["roster-core.readonly", "gradebook.readonly"])
    async with Recorder() as evil:
        _, text = await submit(
            proxy, path, form(evil.url, IC_KEY, "s", "roster-core.readonly", "gradebook.readonly")
        )
    assert evil.seen, "the checks reached the typed server"
    assert all("x-vendor-authorization" not in h for h in evil.seen), evil.seen
    assert ACME_VENDOR_AUTH.partition(":")[2] not in text
    assert 'data-item="vendor_authorization" data-status="skip"' in text
    assert "verified once the operator checks the connection" in text


# -- 3: typed URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "http://[::1",
        "http://district.example:70000",
        "http://user:pw@district.example",
        "ftp://district.example/oneroster",
        "file:///etc/passwd",
        "https://district.example/x?y=1",
        "https://district.example/oneroster#/metrics",
        "gopher://district.example/",
    ],
)
async def test_bad_base_urls_are_400_naming_the_field(proxy, typed):
    path = await invite(proxy, "app-u")
    status, text = await submit(proxy, path, form(typed))
    assert status == 400, text
    assert "Base URL:" in text
    assert await proxy.services.store.get_connection("app-u") is None


async def test_a_bad_token_url_is_400_naming_the_field(proxy, sandbox):
    path = await invite(proxy, "app-t")
    status, text = await submit(
        proxy, path, form(sandbox.base_url, auth="oauth2", token_url="https://a.example/t?x=1")
    )
    assert status == 400 and "Token URL:" in text, text


async def test_private_addresses_are_refused_unless_allowed(public_proxy, sandbox):
    port = sandbox.base_url.rsplit(":", 1)[1]
    async with Recorder() as evil:
        evil_port = evil.url.rsplit(":", 1)[1]
        for typed in [
            sandbox.base_url,  # 127.0.0.1
            f"http://[::ffff:127.0.0.1]:{port}",
            f"http://localhost:{evil_port}",
            f"http://0.0.0.0:{evil_port}",
            "http://10.1.2.3",
            "http://192.168.1.1",
            "http://172.16.0.1",
            "http://100.64.0.1",
            "http://169.254.169.254",
            "http://224.0.0.1",
            "http://[fd00::1]",
            "http://[fe80::1]",
            "http://[::]",
            f"http://2130706433:{evil_port}",
        ]:
            path = await invite(public_proxy, "app-p")
            status, text = await submit(public_proxy, path, form(typed))
            assert status == 400, (typed, text)
            assert "Base URL:" in text, typed
            await admin(public_proxy, "DELETE", "/admin/connections/app-p/invite")
        path = await invite(public_proxy, "app-p")
        status, text = await submit(
            public_proxy,
            path,
            form("https://district.example", auth="oauth2", token_url=f"{evil.url}/token"),
        )
        assert status == 400 and "Token URL:" in text, text
    assert evil.seen == []  # nothing reached the loopback server


async def test_the_resolver_asks_once_and_connects_to_what_it_checked(monkeypatch):
    answers = iter(["93.184.216.34", "127.0.0.1"])
    asked: list[str] = []

    async def getaddrinfo(host: str, port: int, **kw: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    resolver = PinnedResolver(private_ok=False)
    first = await resolver.resolve("rebind.example", 443, family=socket.AF_UNSPEC)
    again = await resolver.resolve("rebind.example", 443, family=socket.AF_UNSPEC)
    assert asked == ["rebind.example"]  # a second (rebound) DNS answer is never asked for
    assert first == again and first[0]["host"] == "93.184.216.34"
    with pytest.raises(OSError, match="loopback"):
        await PinnedResolver(private_ok=False).resolve("rebind.example", 443)


async def test_far_end_bytes_beyond_an_imsx_description_are_never_shown(proxy):
    # A service that is not HTTP: its banner is never shown.
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_BANNER-MARKER internal-host-7\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        path = await invite(proxy, "app-b1")
        status, text = await submit(proxy, path, form(f"http://127.0.0.1:{port}"))
    finally:
        server.close()
    assert status == 422, text
    assert "BANNER-MARKER" not in text and "internal-host-7" not in text
    # An internal JSON service: only its imsx_description, cut short, nothing else of its body.
    long = "D" * 300
    body = {"imsx_description": long, "internal": "BODY-MARKER", "imsx_codeMajor": "failure"}
    async with Recorder(401, body) as internal:
        path = await invite(proxy, "app-b2")
        status, text = await submit(proxy, path, form(internal.url))
    assert status == 422, text
    assert "BODY-MARKER" not in text
    assert "D" * 90 in text and "D" * 201 not in text


# -- 5: no input gives a 500 -------------------------------------------------------------------


async def test_odd_form_input_is_400_never_500(proxy):
    path = await invite(proxy, "app-o")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for raw in [
            b"base_url=https%3A%2F%2Fa.example%2F%ED%A0%80&key=%ED%A0%80&secret=x",
            b"base_url=http%3A%2F%2F%5B%3A%3A1&key=k&secret=s&versions=v1p1&scopes=roster-core.readonly",
            b"key=" + b"k" * 100_000,
            b"key=" + b"k" * 1_100_000,  # over 1 MB
        ]:
            async with http.get(proxy.url + path) as resp:
                token = CSRF_RE.search(await resp.text()).group(1)  # type: ignore[union-attr]
            async with http.post(
                proxy.url + path,
                data=b"csrf=" + token.encode() + b"&" + raw,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as resp:
                assert resp.status == 400, (raw[:60], await resp.text())


# -- 8: the link's budget, listing and revoking ------------------------------------------------


async def test_posts_without_the_csrf_token_do_not_spend_the_links_budget(proxy):
    path = await invite(proxy, "app-c")
    async with aiohttp.ClientSession() as http:
        for _ in range(15):
            async with http.post(proxy.url + path, data={"base_url": "x"}) as resp:
                assert resp.status == 403
    status, text = await submit(proxy, path, [("base_url", "not a url")])
    assert status == 400, text  # the district's own tries are all still there


async def test_outstanding_invites_are_listed_and_revoked_over_the_admin_api(proxy):
    path = await invite(proxy, "app-l", district_name="lake", scopes=["roster-core.readonly"])
    token = path.rsplit("/", 1)[1]
    status, listed = await admin(proxy, "GET", "/admin/invites")
    assert status == 200
    assert [(i["app_id"], i["vendor"], i["district_name"], i["scopes"]) for i in listed] == [
        ("app-l", "acme", "lake", ["roster-core.readonly"])
    ]
    assert {"created", "expires"} <= set(listed[0]) and token not in json.dumps(listed)
    status, _ = await admin(proxy, "DELETE", "/admin/connections/app-l/invite")
    assert status == 204
    status, body = await admin(proxy, "DELETE", "/admin/connections/app-l/invite")
    assert status == 404, body
    assert (await admin(proxy, "GET", "/admin/invites"))[1] == []
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + path) as resp:
            assert resp.status == 404
    revoked = [
        e for e in await proxy.services.store.list_audit() if e.action == "connection.invite_revoke"
    ]
    assert len(revoked) == 1 and revoked[0].interface == "admin"
    assert revoked[0].detail["app_id"] == "app-l"
    # The district name is free again for a new link.
    await invite(proxy, "app-l2", district_name="lake")


async def test_what_only_the_vendor_can_fix_says_so_and_is_in_the_audit_trail(
    sandbox, start_proxy, tmp_path
):
    doc = console_config(tmp_path, sandbox)
    doc["vendors"]["lonely"] = {}
    proxy = await start_proxy(sandbox, doc)
    status, made = await admin(
        proxy, "POST", "/admin/connections/app-v/invite", {"vendor": "lonely"}
    )
    assert status == 201, made
    path = "/intake/" + made["url"].rsplit("/", 1)[1]
    # The operator drops the vendor from the file before the district answers.
    del doc["vendors"]["lonely"]
    proxy.write(doc)
    assert (await admin(proxy, "POST", "/admin/reload"))[0] == 200
    status, text = await submit(proxy, path, form(sandbox.base_url, sandbox.key, sandbox.secret))
    assert status == 409, text
    assert "The vendor has to finish its setup" in text
    assert "vendors." not in text and "lonely" not in text.split("<main>")[1]
    blocked = [
        e
        for e in await proxy.services.store.list_audit()
        if e.action == "connection.intake_blocked"
    ]
    assert len(blocked) == 1 and blocked[0].detail["app_id"] == "app-v"


async def test_a_name_that_does_not_resolve_is_the_checklists_to_judge(public_proxy):
    path = await invite(public_proxy, "app-n")
    status, text = await submit(public_proxy, path, form("https://no-such-district.invalid"))
    assert status == 422, text
    assert 'data-item="district_reachable" data-status="fail"' in text


async def test_the_intake_cookie_uses_the_host_prefix_behind_https(sandbox, start_proxy, tmp_path):
    doc = console_config(tmp_path, sandbox, public_url="https://proxy.example")
    proxy = await start_proxy(sandbox, doc)
    status, made = await admin(proxy, "POST", "/admin/connections/app-h/invite", {"vendor": "acme"})
    assert status == 201 and made["url"].startswith("https://proxy.example/intake/")
    path = "/intake/" + made["url"].rsplit("/", 1)[1]
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + path) as resp:
            cookies = resp.headers.getall("Set-Cookie")
            assert resp.headers["Content-Security-Policy"] == (
                "default-src 'self'; form-action 'self'; base-uri 'none'"
            )
    (cookie,) = [c for c in cookies if c.startswith("__Host-orp_intake_csrf=")]
    assert "Secure" in cookie and "Path=/;" in cookie + ";" and "Domain" not in cookie
