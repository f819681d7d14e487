"""``oneroster-proxy connections invite`` (docs/commands.md): the real CLI in a subprocess
makes a link, the real proxy serves its form, and bad input is one line naming what is wrong."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from tests.cli.test_tokens import run_cli
from tests.console.test_http import console_config
from tests.console_support import ConsoleClient
from tests.support import ADMIN_TOKEN, ProxyHarness, auth


async def test_invite_prints_a_working_link_on_the_last_line(sandbox, tmp_path) -> None:
    doc = console_config(tmp_path, sandbox, public_url="https://proxy.example")
    harness = ProxyHarness(tmp_path, doc)
    config = str(harness.config_path)
    code, out, err = await run_cli(
        "connections", "invite", "app-12", "--vendor", "acme", "--config", config,
        "--district-name", "shelbyville", "--scopes", "roster-core.readonly,gradebook.readonly",
        "--ttl", "2d",
    )  # fmt: skip
    assert code == 0, err
    url = out.rstrip("\n").splitlines()[-1]
    match = re.fullmatch(r"https://proxy\.example/intake/([A-Za-z0-9_-]{43})", url)
    assert match, out
    assert out.count(match.group(1)) == 1  # shown once, nowhere else

    await harness.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{harness.url}/intake/{match.group(1)}") as resp:
                page = await resp.text()
                assert resp.status == 200
        assert "Connect your district to acme" in page and "app-12" in page
        for scope in ("roster-core.readonly", "gradebook.readonly"):
            assert re.search(rf'value="{re.escape(scope)}" checked', page), scope
        invite = (await harness.services.store.list_audit())[-1]
        assert invite.action == "connection.invite" and invite.interface == "cli"
        assert invite.detail["app_id"] == "app-12" and match.group(1) not in str(invite)
    finally:
        await harness.stop()


async def test_invite_refusals_are_one_line(sandbox, tmp_path) -> None:
    doc: dict[str, Any] = console_config(tmp_path, sandbox)
    config = str(ProxyHarness(tmp_path, doc).config_path)
    cases = [
        (["app-12", "--vendor", "nobody"], "vendor"),
        (["app-7", "--vendor", "acme"], "app_id"),
        (["app-12", "--vendor", "acme", "--scopes", "gradebook.write"], "scopes[0]"),
        (["app-12", "--vendor", "acme", "--ttl", "soon"], "--ttl"),
        (["app-12", "--vendor", "acme", "--district-name", "springfield"], "district_name"),
    ]
    for args, named in cases:
        code, out, err = await run_cli("connections", "invite", *args, "--config", config)
        assert code != 0, (args, out)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], (args, err)
        assert "/intake/" not in out

    del doc["store"]["secret_keys"]
    ProxyHarness(tmp_path, doc)
    code, _, err = await run_cli(
        "connections", "invite", "app-12", "--vendor", "acme", "--config", config
    )
    assert code != 0 and "store.secret_keys" in err


async def test_an_invite_granting_gradebook_to_a_vendor_without_its_key_warns(
    sandbox, tmp_path
) -> None:
    # docs/http-api.md "District intake": vendor "other" has no vendor_authorization, so an
    # Infinite Campus district would refuse its gradebook requests; the operator is told on
    # every interface, and the link is still made.
    doc = console_config(tmp_path, sandbox)
    harness = ProxyHarness(tmp_path, doc)
    config = str(harness.config_path)
    code, out, err = await run_cli(
        "connections", "invite", "app-20", "--vendor", "other", "--config", config,
        "--scopes", "roster-core.readonly,gradebook.readonly",
    )  # fmt: skip
    assert code == 0, err
    assert "warning:" in err and "vendor_authorization" in err and "gradebook.readonly" in err
    assert "/intake/" in out.splitlines()[-1]
    for vendor, scopes in (("acme", "gradebook.readonly"), ("other", "roster-core.readonly")):
        code, _, err = await run_cli(
            "connections", "invite", f"app-{vendor}", "--vendor", vendor, "--config", config,
            "--scopes", scopes,
        )  # fmt: skip
        assert code == 0 and "warning" not in err, err

    await harness.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{harness.admin_url}/admin/connections/app-21/invite",
                json={"vendor": "other", "scopes": ["gradebook.createput"]},
                headers=auth(ADMIN_TOKEN),
            ) as resp:
                made = await resp.json()
                assert resp.status == 201, made
        assert len(made["warnings"]) == 1 and "gradebook.createput" in made["warnings"][0]
        console = ConsoleClient(harness.admin_url)
        try:
            await console.sign_in()
            status, page, _ = await console.post(
                "/console/invite",
                [("app_id", "app-22"), ("vendor", "other"), ("ttl", "7d"),
                 ("scopes", "gradebook.readonly")],
            )  # fmt: skip
        finally:
            await console.close()
        assert status == 200 and 'class="notice warn"' in page
        assert "has no vendor_authorization" in page
    finally:
        await harness.stop()
