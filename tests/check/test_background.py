"""Background checks against the real sandbox district (docs/checklist.md):
``[server] check_interval`` runs the checklist on its own, one process at a time through the
store lock, results are kept and served as ``last_check`` and as metrics, and the alert rule
fires on two failures in a row."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import yaml

from proxy.check import CHECKS
from proxy.check.background import LOCK_KEY, BackgroundChecks
from tests.support import ADMIN_TOKEN, auth, base_config
from tests.test_dashboard import ALERTS

ADMIN = auth(ADMIN_TOKEN)


def with_bad_connection(doc: dict[str, Any]) -> dict[str, Any]:
    doc["connections"]["app-9"] = {
        **doc["connections"]["app-8"],
        "secret": "not-the-district-secret",
    }
    return doc


async def admin_json(http: aiohttp.ClientSession, proxy: Any, path: str) -> Any:
    async with http.get(proxy.admin_url + path, headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def metric_lines(http: aiohttp.ClientSession, proxy: Any, name: str) -> dict[str, float]:
    async with http.get(proxy.admin_url + "/metrics") as resp:
        text = await resp.text()
    found = {}
    for line in text.splitlines():
        match = re.match(rf"^oneroster_proxy_{name}\{{(.*)\}} (\S+)$", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


async def test_check_interval_runs_every_connection_on_its_own(
    sandbox, start_proxy, http, tmp_path
):
    doc = with_bad_connection(base_config(tmp_path, sandbox, check_interval="1s"))
    proxy = await start_proxy(sandbox, doc)

    # The loop runs by itself; wait (no timing asserted) until it has covered every connection.
    for _ in range(600):
        views = [
            await admin_json(http, proxy, f"/admin/connections/{a}")
            for a in ("app-7", "app-8", "app-9")
        ]
        if all(v["last_check"] is not None for v in views):
            break
        await asyncio.sleep(0.05)
    good, _, bad = views
    assert good["last_check"]["app"] == "app-7" and good["last_check"]["ok"] is True
    assert [c["name"] for c in good["last_check"]["checks"]] == list(CHECKS)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", good["last_check"]["at"])
    assert bad["last_check"]["ok"] is False
    failing = {c["name"]: c for c in bad["last_check"]["checks"] if c["status"] == "fail"}
    assert "credentials_accepted" in failing
    assert "key/secret wrong or expired" in failing["credentials_accepted"]["detail"]

    ok = await metric_lines(http, proxy, "check_ok")
    assert ok['app="app-7",district="springfield"'] == 1.0
    assert ok['app="app-9",district="springfield"'] == 0.0
    stamps = await metric_lines(http, proxy, "check_timestamp_seconds")
    assert stamps['app="app-7",district="springfield"'] > 1.7e9


async def test_two_failures_in_a_row_raise_the_alert_metric(sandbox, start_proxy, http, tmp_path):
    proxy = await start_proxy(sandbox, with_bad_connection(base_config(tmp_path, sandbox)))
    checks = BackgroundChecks(proxy.services, interval=0.0)

    assert sorted(await checks.round() or []) == ["app-7", "app-8", "app-9"]
    twice = await metric_lines(http, proxy, "check_failed_twice")
    assert twice['app="app-9",district="springfield"'] == 0.0  # one failure is no alert yet
    await checks.round()
    twice = await metric_lines(http, proxy, "check_failed_twice")
    assert twice['app="app-9",district="springfield"'] == 1.0
    assert twice['app="app-7",district="springfield"'] == 0.0

    # The rule shipped in config/ alerts on exactly that series.
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    rule = next(r for r in rules if r["alert"] == "OneRosterConnectionCheckFailing")
    assert "oneroster_proxy_check_failed_twice" in rule["expr"] and "== 1" in rule["expr"]

    history = await proxy.services.store.list_check_results("app-9")
    assert len(history) == 2 and not any(r.ok for r in history)


async def test_one_process_at_a_time_and_only_what_is_due(sandbox, start_proxy, tmp_path):
    proxy = await start_proxy(sandbox, base_config(tmp_path, sandbox))
    store = proxy.services.store
    first = BackgroundChecks(proxy.services, holder="replica-a", interval=3600.0)
    second = BackgroundChecks(proxy.services, holder="replica-b", interval=3600.0)

    # Another replica holds the lock: this one does nothing at all.
    assert await store.acquire_slot(LOCK_KEY, 1, "replica-b", 60.0)
    assert await first.round() is None
    assert await store.list_check_results("app-7") == []
    await store.release_slot(LOCK_KEY, "replica-b")

    assert sorted(await first.round() or []) == ["app-7", "app-8"]
    # The round just done is not repeated by the next replica to get the lock.
    assert await second.round() == []
    assert len(await store.list_check_results("app-7")) == 1
    # Each round gives the lock back.
    assert await store.acquire_slot(LOCK_KEY, 1, "replica-c", 60.0)


def test_every_six_hours_by_default_and_0s_is_off():
    from proxy import config as config_mod

    assert config_mod.validate({}).server.check_interval == 6 * 3600
    off = config_mod.validate({"server": {"check_interval": "0s"}})
    assert off.server.check_interval == 0


async def test_0s_is_off(sandbox, proxy, http):
    # tests.support's configs say check_interval = "0s": nothing is checked on its own.
    assert proxy.config.server.check_interval == 0
    assert BackgroundChecks(proxy.services).interval == 0
    await asyncio.sleep(0.5)
    view = await admin_json(http, proxy, "/admin/connections/app-7")
    assert view["last_check"] is None
    assert await metric_lines(http, proxy, "check_ok") == {}


async def test_run_check_now_is_kept_in_the_history(sandbox, proxy, http):
    async with http.post(proxy.admin_url + "/admin/connections/app-7/check", headers=ADMIN) as r:
        assert r.status == 200
        report = await r.json()
    view = await admin_json(http, proxy, "/admin/connections/app-7")
    assert {k: v for k, v in view["last_check"].items() if k != "at"} == report
