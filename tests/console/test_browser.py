"""The console and the intake page in a real browser: Debian's headless Chromium
(``/usr/bin/chromium``, never a downloaded build) driven by Playwright, against the real proxy
and the real sandbox district (docs/http-api.md).

Each test launches its own Chromium (a fresh temporary profile) and each walk that must not
share cookies gets a fresh browser context. The screenshots of the board and of the intake
page in the README are written here, by the run itself (``docs/console-board.png``,
``docs/intake.png``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.check import CHECKS
from proxy.check.background import BackgroundChecks
from tests.console.test_http import console_config
from tests.support import ADMIN_TOKEN, auth

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
TOKEN_RE = re.compile(r"^orp_[a-z0-9]{12}_[A-Za-z0-9_-]{43,}$")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert HAVE_CHROMIUM, "install Debian's chromium package (.ci/run does)"
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def proxy(sandbox, start_proxy, tmp_path):
    return await start_proxy(sandbox, console_config(tmp_path, sandbox))


async def gateway_get(proxy: Any, token: str, app: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.app_url("v1p1/orgs?limit=1", app), headers=auth(token)) as r:
            await r.read()
            return r.status


async def sign_in(page: Any, proxy: Any) -> None:
    await page.goto(proxy.admin_url + "/console/")
    assert page.url.endswith("/console/signin")  # no session yet
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(proxy.admin_url + "/console/")


async def test_operator_signs_in_reads_the_board_checks_and_manages_tokens(browser, proxy, sandbox):
    # Some traffic first, so the board's last hour has something to draw.
    token = await proxy.token("acme")
    for _ in range(6):
        assert await gateway_get(proxy, token, "app-7") == 200

    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await sign_in(page, proxy)

    board = page.locator("#board")
    for app in ("app-7", "app-8", "app-9"):
        assert await board.locator(f'tr[data-app="{app}"]').count() == 1
    row7 = board.locator('tr[data-app="app-7"]')
    assert "6 req" in await row7.locator('td[data-label="Last hour"]').inner_text()
    assert "acme" in await row7.locator('td[data-label="Vendor"]').inner_text()
    assert "OAuth 1.0a" in await row7.inner_text()

    # Run check now on the connection with the wrong secret: the failing item and its hint.
    await board.get_by_role("link", name="app-9").click()
    await page.get_by_role("button", name="Run check now").click()
    item = page.locator('li[data-item="credentials_accepted"]')
    assert await item.get_attribute("class") == "fail"
    assert "key/secret wrong or expired" in await item.inner_text()
    shown = [await li.get_attribute("data-item") for li in await page.locator("ul.items li").all()]
    assert shown == list(CHECKS)
    assert "fail" in await page.locator("#history").inner_text()

    await page.get_by_role("link", name="Connections").click()
    await page.get_by_role("button", name="Filter").wait_for()
    await page.get_by_label("failing only").check()
    await page.get_by_role("button", name="Filter").click()
    failing_rows = page.locator("#board tbody tr[data-app]")
    assert [await r.get_attribute("data-app") for r in await failing_rows.all()] == ["app-9"]
    check_cell = failing_rows.first.locator('td[data-label="Last check"]')
    assert "credentials_accepted" in await check_cell.inner_text()
    assert "key/secret wrong or expired" in await check_cell.inner_text()
    # The README's picture: every connection checked (as check_interval would), one failing.
    assert await BackgroundChecks(proxy.services, interval=0.0).round() is not None
    await page.goto(proxy.admin_url + "/console/")
    assert "not yet" not in await page.locator("#board").inner_text()
    await page.screenshot(path=str(DOCS / "console-board.png"), full_page=True)

    # A vendor's tokens: issue one (shown once), see it work, revoke it.
    await page.locator('#board tr[data-app="app-7"]').get_by_role("link", name="acme").click()
    await page.get_by_label("TTL").fill("1h")
    await page.get_by_role("button", name="Issue token").click()
    issued = (await page.locator("#new-token").inner_text()).strip()
    assert TOKEN_RE.match(issued)
    assert await gateway_get(proxy, issued, "app-7") == 200
    token_id = issued.split("_")[1]
    row = page.locator(f'tr[data-token="{token_id}"]')
    assert "active" in await row.inner_text()
    await row.get_by_role("button", name="Revoke").click()
    assert "revoked" in await page.locator(f'tr[data-token="{token_id}"]').inner_text()
    assert await page.locator("#new-token").count() == 0  # never shown again
    assert await gateway_get(proxy, issued, "app-7") == 401

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(re.compile(r".*/console/signin$"))
    await page.goto(proxy.admin_url + "/console/vendors/acme")
    assert page.url.endswith("/console/signin")
    await context.close()


async def test_district_connects_itself_through_an_intake_link(browser, proxy, sandbox):
    # The operator makes the link in the console...
    operator = await browser.new_context()
    page = await operator.new_page()
    await sign_in(page, proxy)
    await page.get_by_label("appId").fill("app-new")
    await page.get_by_label("Vendor").last.select_option("acme")
    await page.get_by_label("District name").fill("shelbyville")
    await page.get_by_label("roster-core.readonly").check()
    await page.get_by_role("button", name="Invite").click()
    url = (await page.locator("#invite-url").inner_text()).strip()
    assert re.fullmatch(r"http://[^/]+/intake/[A-Za-z0-9_-]{43}", url)
    await operator.close()
    link = proxy.url + "/intake/" + url.rsplit("/", 1)[1]

    # ... and district IT opens it in a browser of its own.
    district = await browser.new_context(viewport={"width": 1000, "height": 900})
    page = await district.new_page()
    await page.goto(link)
    assert await page.get_by_label("OneRoster 1.1").is_checked()
    assert await page.get_by_label("OneRoster 1.2").is_checked()
    assert await page.get_by_label("OAuth 1.0a").is_checked()
    assert not await page.get_by_label("OAuth 2").is_checked()
    assert await page.get_by_label("roster-core.readonly").is_checked()
    # Only what the invite names is offered, each scope with a line saying what it shares.
    assert await page.get_by_label("gradebook.readonly").count() == 0
    scope_box = page.get_by_label("roster-core.readonly")
    assert await scope_box.get_attribute("aria-describedby") == "scope-1-what"
    assert "Schools, classes" in await page.locator("#scope-1-what").inner_text()
    # Not an Infinite Campus district: no Campus help.
    assert await page.locator("#infinite-campus-help").count() == 0
    for label in ("Base URL", "Token URL", "Key", "Secret"):
        assert await page.get_by_label(label, exact=True).count() == 1, label

    # First try: a wrong secret.
    await page.get_by_label("Base URL").fill(sandbox.base_url)
    await page.get_by_label("Key").fill(sandbox.key)
    await page.get_by_label("Secret").fill("not-the-secret")
    await page.get_by_role("button", name="Connect").click()
    item = page.locator('li[data-item="credentials_accepted"]')
    await item.wait_for()
    assert await item.get_attribute("class") == "fail"
    assert await item.get_attribute("data-status") == "fail"
    assert "refused the Key and Secret" in await item.inner_text()
    assert "in your SIS" in await item.inner_text()
    names = [await li.get_attribute("data-item") for li in await page.locator("ul.items li").all()]
    assert names == list(CHECKS)
    shown = await page.locator("ul.items").inner_text()
    # Written for district IT: no checklist names, config keys or vendor settings.
    for name in (*CHECKS, "vendors.", "districts.", "connections.", "AwesomeLMS", "scopes"):
        assert name not in shown, name
    grade = page.locator('li[data-item="vendor_authorization"]')
    assert await grade.get_attribute("data-status") == "skip"
    assert await page.get_by_label("Base URL").input_value() == sandbox.base_url
    assert await page.get_by_label("Key").input_value() == sandbox.key
    assert await page.get_by_label("Secret").input_value() == ""
    assert "not-the-secret" not in await page.content()
    await page.screenshot(path=str(DOCS / "intake.png"), full_page=True)
    assert await gateway_get(proxy, await proxy.token("acme"), "app-new") == 404

    # Second try: the right secret. Saved, serving at once, the link spent.
    await page.get_by_label("Secret").fill(sandbox.secret)
    await page.get_by_role("button", name="Connect").click()
    await page.get_by_role("heading", name="Connected").wait_for()
    assert await page.locator("ul.items li.fail").count() == 0
    assert sandbox.secret not in await page.content()
    assert await gateway_get(proxy, await proxy.token("acme"), "app-new") == 200
    response = await page.goto(link)
    assert response is not None and response.status == 404
    await district.close()

    record = await proxy.services.store.get_connection("app-new")
    assert record is not None and record.district == "shelbyville"
    assert sandbox.secret not in record.secret  # sealed, never in clear
    actions = [e.action for e in await proxy.services.store.list_audit()]
    assert "connection.invite" in actions and "connection.intake" in actions


async def every_field_is_labelled(page: Any) -> None:
    """A screen reader names every field: each visible input has a <label>."""
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(e => e.labels.length === 0).map(e => e.name || e.id)"""
    )
    assert unlabelled == []


async def test_an_infinite_campus_district_sees_campus_help_and_words_for_it(
    browser, start_proxy, tmp_path
):
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    campus = await start_sandbox(SandboxOptions(profile="infinite-campus"))
    try:
        proxy = await start_proxy(campus, console_config(tmp_path, campus))
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{proxy.admin_url}/admin/connections/app-ic/invite",
                json={"vendor": "acme", "scopes": ["roster-core.readonly", "gradebook.readonly"]},
                headers=auth(ADMIN_TOKEN),
            ) as resp:
                link = proxy.url + "/intake/" + (await resp.json())["url"].rsplit("/", 1)[1]
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(link)
        await every_field_is_labelled(page)
        assert await page.locator("#infinite-campus-help").count() == 0
        assert "gradebook" in (await page.locator("#scope-2-what").inner_text()).lower()
        await page.get_by_label("Base URL").fill(campus.base_url)
        await page.get_by_label("Key").fill(campus.key)
        await page.get_by_label("Secret").fill("not-the-secret")
        await page.get_by_role("button", name="Connect").click()
        await page.locator('li[data-item="credentials_accepted"]').wait_for()
        await every_field_is_labelled(page)
        help_text = await page.locator("#infinite-campus-help").inner_text()
        assert "Grade Book sync" in help_text and "user accounts" in help_text
        items = await page.locator("ul.items").inner_text()
        # The vendor's own settings (its Infinite Campus vendor key) and config keys: nowhere.
        vendor_key = campus.key.split("_")[1]
        for hidden in ("vendor_authorization", "vendors.", "districts.", "scopes"):
            assert hidden not in items, hidden
        assert vendor_key not in help_text and vendor_key not in items
        grade = page.locator('li[data-item="vendor_authorization"]')
        assert await grade.get_attribute("data-status") == "skip"
        assert "operator checks the connection" in await grade.inner_text()
        await page.get_by_label("Secret").fill(campus.secret)
        await page.get_by_role("button", name="Connect").click()
        await page.get_by_role("heading", name="Connected").wait_for()
        await context.close()
    finally:
        await campus.close()
