"""The console's "Data shared" receipt and the sharing policy form, in Debian's headless
Chromium against the real proxy and sandbox (docs/http-api.md); the intake page shows the
policy read-only."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.admin.test_connections import call, connection_body
from tests.console.test_browser import browser, sign_in  # noqa: F401 (fixture)
from tests.console.test_http import console_config, invite
from tests.support import auth


async def _fetch(proxy: Any, token: str, rest: str, app: str = "app-7") -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.app_url(rest, app), headers=auth(token)) as resp:
            return await resp.json()


async def test_data_shared_receipt_and_policy_form(browser, sandbox, start_proxy, tmp_path):  # noqa: F811
    proxy = await start_proxy(sandbox, console_config(tmp_path, sandbox))
    token = await proxy.token("acme")
    await _fetch(proxy, token, "v1p1/users?limit=4")
    await _fetch(proxy, token, "rostering/v1p2/classes?limit=2")
    async with aiohttp.ClientSession() as http:
        status, _ = await call(
            http, proxy, "POST", "/admin/connections", connection_body(sandbox, "store-1")
        )
        assert status == 201

    page = await browser.new_page()
    await sign_in(page, proxy)
    await page.goto(proxy.admin_url + "/console/connections/app-7")
    assert "users.password" in await page.locator("#drop-fields").inner_text()
    await page.get_by_role("link", name="Data shared").click()
    receipt = page.locator("#receipt-1")
    text = await receipt.inner_text()
    assert "What acme received from springfield" in text
    assert "6 records" in text  # 4 users, 2 classes
    assert "givenName" in text and "password" not in text
    # Print media: the receipt without the console around it.
    await page.emulate_media(media="print")
    assert not await page.locator("header").is_visible()
    assert await receipt.is_visible()
    await page.emulate_media(media="screen")

    await page.goto(proxy.admin_url + "/console/vendors/acme")
    await page.locator("#vendor-shared").click()
    assert "What acme received from springfield" in await page.locator("main").inner_text()

    # A store connection's policy is set from its page; a bad entry is refused, naming it.
    await page.goto(proxy.admin_url + "/console/connections/store-1")
    await page.get_by_label("Fields the vendor never receives").fill("users.phone, nope.x")
    await page.get_by_role("button", name="Save sharing policy").click()
    assert "nope" in await page.locator("main").inner_text()
    assert (await proxy.services.store.get_connection("store-1")).drop_fields is None
    await page.goto(proxy.admin_url + "/console/connections/store-1")
    await page.get_by_label("Fields the vendor never receives").fill("users.phone")
    await page.get_by_role("button", name="Save sharing policy").click()
    assert "Sharing policy saved" in await page.locator("main").inner_text()
    users = (await _fetch(proxy, token, "v1p1/users?limit=3", "store-1"))["users"]
    assert users and all("phone" not in u and "password" in u for u in users)

    # The intake page shows the policy the connection will have, and offers no way to change it.
    url = await invite(proxy, "app-new")
    intake = await browser.new_page()
    await intake.goto(url if url.startswith("http") else proxy.url + url)
    policy = intake.locator("#sharing-policy")
    assert "users.password" in await policy.inner_text()
    assert await policy.locator("input").count() == 0
