"""``check``: every checklist item broken on purpose against a real sandbox district.

docs/checklist.md. Each break test sets up a sandbox (or
a config) that breaks exactly one item and asserts that ``check`` fails exactly that item, with
the documented hint, while every other item keeps its all-green status or is skipped
because it depends on the broken one. The CLI tests run the real ``oneroster-proxy`` entry point in
a subprocess
against a sandbox served by the test's own event loop.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy import config as config_mod
from proxy.check import CHECKS, HINTS, Report, check_all, run_check
from proxy.sandbox import SandboxOptions
from proxy.sandbox.server import RunningSandbox, start_sandbox
from tests.support import ALL_SCOPES, free_port, serve_on_loopback, toml_dumps

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
STORE_DIR = tempfile.mkdtemp(prefix="orp-check-items-")
REPO = str(Path(__file__).resolve().parents[2])

# What an all-green run shows, per kind of district.
GREEN_OAUTH1 = {name: "ok" for name in CHECKS} | {
    "token_endpoint": "skip",
    "infinite_campus_key": "skip",
}
GREEN_OAUTH2 = {name: "ok" for name in CHECKS} | {"infinite_campus_key": "skip"}
GREEN_IC = {name: "ok" for name in CHECKS} | {"token_endpoint": "skip"}
AFTER_CREDENTIALS = ("data_shared", "students_visible", "vendor_authorization")


def district_doc(sb: RunningSandbox) -> dict[str, Any]:
    district: dict[str, Any] = {
        "base_url": sb.base_url,
        "auth": "oauth2" if sb.token_url else "oauth1",
    }
    if sb.token_url:
        district["token_url"] = sb.token_url
    if sb.vendor_key:
        district["vendor_authorization"] = True
    return district


def doc_for(sb: RunningSandbox, *, timeout: str = "3s", **connection: Any) -> dict[str, Any]:
    """A config with one connection ``app-7`` of vendor acme to the sandbox, every scope."""
    vendor: dict[str, Any] = {}
    if sb.vendor_key:
        vendor["vendor_authorization"] = f"{sb.vendor_key}:{sb.vendor_secret}"
    return {
        "server": {"upstream_timeout": timeout},
        # The CLI keeps each check's result in the store: a file of this test run's own.
        "store": {"url": f"sqlite://{STORE_DIR}/store.db"},
        "vendors": {"acme": vendor},
        "districts": {"springfield": district_doc(sb)},
        "connections": {
            "app-7": {
                "vendor": "acme",
                "district": "springfield",
                "key": sb.key,
                "secret": sb.secret,
                "scopes": list(ALL_SCOPES),
                **connection,
            }
        },
    }


async def check_doc(doc: dict[str, Any], app: str = "app-7") -> Report:
    config = config_mod.validate(doc, {}, now=NOW)
    return await run_check(config, app, now=NOW)


def statuses(report: Report) -> dict[str, str]:
    return {item.name: item.status for item in report.checks}


def assert_only(report: Report, expected: dict[str, str]) -> None:
    """Every item has exactly the expected status; each failure ends with the documented
    hint."""
    assert [i.name for i in report.checks] == list(CHECKS)
    assert statuses(report) == expected, "\n".join(
        f"{i.status:<5} {i.name}: {i.detail}" for i in report.checks
    )
    assert report.ok == all(s != "fail" for s in expected.values())
    for item in report.checks:
        assert item.detail and "\n" not in item.detail
        if item.status == "fail":
            assert item.detail.endswith(HINTS[item.name]), item.detail


def detail(report: Report, name: str) -> str:
    return report.item(name).detail


def assert_no_secrets(report: Report, *secrets: str) -> None:
    text = json.dumps(report.as_json())
    for secret in secrets:
        assert secret not in text


@pytest.fixture
async def sandboxes() -> AsyncIterator[Callable[..., Any]]:
    started: list[RunningSandbox] = []

    async def start(**options: Any) -> RunningSandbox:
        running = await start_sandbox(SandboxOptions(**options))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.close()


# -- all green ----------------------------------------------------------------------------------


async def test_all_green_oauth1(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_OAUTH1)
    assert report.ok
    assert "v1p1/orgs?limit=1 answered 200" in detail(report, "credentials_accepted")
    assert "students visible" in detail(report, "students_visible")
    data = detail(report, "data_shared")
    for scope in (
        "roster-core.readonly",
        "roster.readonly",
        "roster-demographics.readonly",
        "resource.readonly",
        "gradebook.readonly",
    ):
        assert scope in data
    assert "gradebook.createput" in data and "unverified" in data
    assert_no_secrets(report, sb.secret)


async def test_all_green_oauth2(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(auth="oauth2")
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_OAUTH2)
    assert "issued a token" in detail(report, "token_endpoint")
    assert "rostering/v1p2/orgs" in detail(report, "credentials_accepted")
    assert_no_secrets(report, sb.secret)


async def test_all_green_infinite_campus(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(profile="infinite-campus")
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_IC)
    assert "with x-vendor-authorization" in detail(report, "vendor_authorization")
    assert '"SandboxLMS"' in detail(report, "infinite_campus_key")
    assert_no_secrets(report, sb.secret, str(sb.vendor_secret))


async def test_check_is_read_only_and_signed_like_the_gateway(
    sandboxes: Callable[..., Any],
) -> None:
    sb = await sandboxes(profile="infinite-campus")
    report = await check_doc(doc_for(sb))
    assert report.ok
    recorded = sb.recorded
    assert recorded
    for entry in recorded:
        assert entry.method == "GET", entry
        assert "limit=1" in entry.raw_path, entry
        assert entry.body == b""
    signed = [e for e in recorded if e.verified]
    assert signed, "no request passed the sandbox's independent OAuth1 verifier"
    headers = [dict((k.lower(), v) for k, v in e.headers) for e in recorded]
    # x-vendor-authorization only on gradebook endpoints, as the gateway sends it.
    for entry, h in zip(recorded, headers, strict=True):
        gradebook = "lineItems" in entry.raw_path
        assert ("x-vendor-authorization" in h) == gradebook, entry.raw_path


# -- one item broken at a time ------------------------------------------------------------------


async def test_connection_disabled(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    report = await check_doc(doc_for(sb, enabled=False))
    assert_only(report, GREEN_OAUTH1 | {"connection_enabled": "fail"})
    assert "connections.app-7.enabled = false" in detail(report, "connection_enabled")


async def test_connection_expired(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    report = await check_doc(doc_for(sb, expires=dt.date(2026, 2, 28)))
    assert_only(report, GREEN_OAUTH1 | {"not_expired": "fail"})
    assert "expired on 2026-02-28" in detail(report, "not_expired")
    assert "1.1 connections expire after one year" in detail(report, "not_expired")


async def test_expiry_day_itself_still_works_and_warns(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    report = await check_doc(doc_for(sb, expires=dt.date(2026, 3, 1)))
    assert_only(report, GREEN_OAUTH1)
    assert detail(report, "not_expired").startswith("warning: expires in 0 days")


async def test_expiry_within_30_days_is_ok_with_a_warning(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    report = await check_doc(doc_for(sb, expires=dt.date(2026, 3, 21)))
    assert_only(report, GREEN_OAUTH1)
    text = detail(report, "not_expired")
    assert text.startswith("warning: expires in 20 days (2026-03-21)")
    assert "renew the connection" in text
    far = await check_doc(doc_for(sb, expires=dt.date(2027, 6, 30)))
    assert detail(far, "not_expired") == "expires 2027-06-30 (in 486 days)"


async def test_district_unreachable(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    doc = doc_for(sb)
    doc["districts"]["springfield"]["base_url"] = f"http://127.0.0.1:{free_port()}"
    report = await check_doc(doc)
    assert_only(
        report,
        GREEN_OAUTH1
        | {
            "district_reachable": "fail",
            "credentials_accepted": "skip",
            **{name: "skip" for name in AFTER_CREDENTIALS},
        },
    )
    assert "could not be reached" in detail(report, "district_reachable")
    # A plain-HTTP district: the OS's words, not aiohttp's "ssl:default".
    assert "ssl:" not in detail(report, "district_reachable")
    assert "Connection refused" in detail(report, "district_reachable")
    assert "district_reachable did not pass" in detail(report, "credentials_accepted")


async def test_district_base_path_wrong(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(profile="infinite-campus")
    doc = doc_for(sb)
    # The Infinite Campus base path without its app name: a server answers, no OneRoster there.
    doc["districts"]["springfield"]["base_url"] = sb.base_url.rsplit("/", 1)[0]
    report = await check_doc(doc)
    assert_only(
        report,
        GREEN_IC
        | {
            "district_reachable": "fail",
            "credentials_accepted": "skip",
            **{name: "skip" for name in AFTER_CREDENTIALS},
        },
    )
    assert "answered 404" in detail(report, "district_reachable")
    assert "before /ims/oneroster" in detail(report, "district_reachable")


async def test_hanging_district_is_bounded_by_upstream_timeout(
    sandboxes: Callable[..., Any],
) -> None:
    sb = await sandboxes(auth="oauth2")
    sb.faults.hang_paths = ["*"]
    started = time.monotonic()
    report = await check_doc(doc_for(sb, timeout="1s"))
    took = time.monotonic() - started
    assert took < 3.0, took
    assert_only(
        report,
        GREEN_OAUTH2
        | {
            "district_reachable": "fail",
            "token_endpoint": "fail",
            "credentials_accepted": "skip",
            **{name: "skip" for name in AFTER_CREDENTIALS},
        },
    )
    assert "no answer within 1s" in detail(report, "district_reachable")


async def test_one_hanging_endpoint_is_bounded_too(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    sb.faults.hang_paths = ["demographics"]
    started = time.monotonic()
    report = await check_doc(doc_for(sb, timeout="1s"))
    assert time.monotonic() - started < 3.0
    assert_only(report, GREEN_OAUTH1 | {"data_shared": "fail"})
    assert "roster-demographics.readonly" in detail(report, "data_shared")
    assert "no answer within 1s" in detail(report, "data_shared")


async def test_token_endpoint_refuses_the_secret(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(auth="oauth2")
    report = await check_doc(doc_for(sb, secret="not-the-secret"))
    assert_only(
        report,
        GREEN_OAUTH2
        | {
            "token_endpoint": "fail",
            "credentials_accepted": "skip",
            **{name: "skip" for name in AFTER_CREDENTIALS},
        },
    )
    text = detail(report, "token_endpoint")
    assert "answered HTTP 401 (invalid_client)" in text
    assert "not-the-secret" not in text


async def test_token_url_wrong(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(auth="oauth2")
    doc = doc_for(sb)
    doc["districts"]["springfield"]["token_url"] = sb.base_url + "/oauth/token"
    report = await check_doc(doc)
    assert_only(
        report,
        GREEN_OAUTH2
        | {
            "token_endpoint": "fail",
            "credentials_accepted": "skip",
            **{name: "skip" for name in AFTER_CREDENTIALS},
        },
    )
    assert "answered HTTP 404" in detail(report, "token_endpoint")


async def test_credentials_refused(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    report = await check_doc(doc_for(sb, secret="wrong-secret-of-a-year-ago"))
    assert_only(
        report,
        GREEN_OAUTH1
        | {
            "credentials_accepted": "fail",
            **{name: "skip" for name in AFTER_CREDENTIALS},
        },
    )
    text = detail(report, "credentials_accepted")
    assert "answered 401" in text
    assert text.endswith("key/secret wrong or expired")
    assert "cannot judge" in detail(report, "data_shared")


async def test_granted_scope_not_shared_by_the_district(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(deny_scopes=("roster-demographics.readonly",))
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_OAUTH1 | {"data_shared": "fail"})
    text = detail(report, "data_shared")
    assert (
        "roster-demographics.readonly is in scopes but GET v1p1/demographics?limit=1 answered 403"
        in text
    )
    assert text.endswith("""align the district's "Data to Share" with `scopes`""")


async def test_granted_scope_not_shared_oauth2(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(auth="oauth2", deny_scopes=("resource.readonly",))
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_OAUTH2 | {"data_shared": "fail"})
    assert "resource.readonly is in scopes but" in detail(report, "data_shared")


async def test_district_shares_more_than_scopes(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes()
    scopes = [s for s in ALL_SCOPES if s != "resource.readonly"]
    report = await check_doc(doc_for(sb, scopes=scopes))
    # The connection works (the proxy refuses the extra paths): ok, with a warning.
    assert_only(report, GREEN_OAUTH1)
    assert report.ok
    text = detail(report, "data_shared")
    assert text.startswith(
        "warning: the district shares more than scopes: "
        "resource.readonly (GET v1p1/resources?limit=1 answered 200); the proxy refuses those paths"
    ), text


async def test_roster_relationships_shared_beyond_roster_core(
    sandboxes: Callable[..., Any],
) -> None:
    sb = await sandboxes()
    scopes = [s for s in ALL_SCOPES if s != "roster.readonly"]
    report = await check_doc(doc_for(sb, scopes=scopes))
    assert_only(report, GREEN_OAUTH1)
    assert "shares more than scopes: roster.readonly (GET v1p1/schools/{id}/classes?limit=1" in (
        detail(report, "data_shared")
    )


async def test_exact_data_to_share_passes(sandboxes: Callable[..., Any]) -> None:
    """A district sharing only rostering, and scopes saying just that: nothing else reachable."""
    denied = (
        "roster-demographics.readonly",
        "resource.readonly",
        "gradebook.readonly",
        "gradebook.createput",
        "gradebook.delete",
    )
    sb = await sandboxes(deny_scopes=denied)
    report = await check_doc(doc_for(sb, scopes=["roster.readonly", "roster-core.readonly"]))
    assert_only(report, GREEN_OAUTH1 | {"vendor_authorization": "skip"})
    assert detail(report, "vendor_authorization") == "no gradebook scope in scopes"


async def test_rostering_refused_is_not_judged_twice(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(deny_scopes=("roster.readonly", "roster-core.readonly"))
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_OAUTH1 | {"data_shared": "fail", "students_visible": "skip"})
    assert "see data_shared" in detail(report, "students_visible")


async def test_no_students_visible(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(hide_students=True)
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_OAUTH1 | {"students_visible": "fail"})
    text = detail(report, "students_visible")
    assert "GET v1p1/students?limit=1 answered 200 with no student (OneRoster 1.1)" in text
    assert text.endswith("students and parents need user accounts")


async def test_no_students_visible_infinite_campus(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(profile="infinite-campus", hide_students=True)
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_IC | {"students_visible": "fail"})


async def test_vendor_authorization_refused(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(profile="infinite-campus")
    doc = doc_for(sb)
    doc["vendors"]["acme"]["vendor_authorization"] = f"{sb.vendor_key}:WRONGSECRET"
    report = await check_doc(doc)
    assert_only(report, GREEN_IC | {"vendor_authorization": "fail"})
    text = detail(report, "vendor_authorization")
    assert "v1p1/lineItems?limit=1 answered 401" in text
    assert (
        'the district refused vendors.acme.vendor_authorization (vendor key "SandboxLMS")' in text
    )
    assert "WRONGSECRET" not in json.dumps(report.as_json())
    # data_shared does not blame Data to Share for what the vendor header caused.
    assert "see vendor_authorization" in detail(report, "data_shared")


async def test_vendor_authorization_not_sent(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(profile="infinite-campus")
    doc = doc_for(sb)
    doc["districts"]["springfield"]["vendor_authorization"] = False
    report = await check_doc(doc)
    assert_only(report, GREEN_IC | {"vendor_authorization": "fail"})
    assert "districts.springfield.vendor_authorization is false" in detail(
        report, "vendor_authorization"
    )

    doc = doc_for(sb)
    del doc["vendors"]["acme"]["vendor_authorization"]
    report = await check_doc(doc)
    # No vendor key to compare the consumer key with: infinite_campus_key cannot be judged.
    assert_only(report, GREEN_IC | {"vendor_authorization": "fail", "infinite_campus_key": "skip"})
    assert "vendors.acme.vendor_authorization is not set" in detail(report, "vendor_authorization")


async def test_infinite_campus_key_of_another_vendor(sandboxes: Callable[..., Any]) -> None:
    sb = await sandboxes(profile="infinite-campus", key=f"InfiniteCampus_OtherLMS_{uuid.uuid4()}")
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_IC | {"infinite_campus_key": "fail"})
    text = detail(report, "infinite_campus_key")
    assert 'names vendor key "OtherLMS"' in text and '"SandboxLMS"' in text
    assert text.endswith("the key belongs to another vendor key")


# -- unknown appId, the admin API ---------------------------------------------------------------


async def test_unknown_app_id(sandboxes: Callable[..., Any]) -> None:
    from proxy.errors import NotFound

    sb = await sandboxes()
    with pytest.raises(NotFound):
        await check_doc(doc_for(sb), app="app-404")


async def test_admin_check_returns_the_same_json(
    sandboxes: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.support import ADMIN_TOKEN, ProxyHarness, base_config

    sb = await sandboxes()
    harness = ProxyHarness(tmp_path, base_config(tmp_path, sb))
    await harness.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{harness.admin_url}/admin/connections/app-7/check"
            async with http.post(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
                assert resp.status == 200
                body = await resp.json()
            async with http.post(url) as resp:
                assert resp.status == 401
    finally:
        await harness.stop()
    assert set(body) == {"app", "ok", "checks"}
    assert body["app"] == "app-7" and body["ok"] is True
    assert [c["name"] for c in body["checks"]] == list(CHECKS)
    assert all(set(c) == {"name", "status", "detail"} for c in body["checks"])


# -- check --all --------------------------------------------------------------------------------


async def test_check_all_is_concurrent_and_bounded(sandboxes: Callable[..., Any]) -> None:
    """Seven districts that each take 0.2 s per answer, checked three at a time."""
    districts = [await sandboxes() for _ in range(7)]
    doc = doc_for(districts[0])
    template = doc["connections"].pop("app-7")
    for i, sb in enumerate(districts):
        sb.faults.delay_head = 0.2
        doc["districts"][f"d{i}"] = district_doc(sb)
        doc["connections"][f"app-{i}"] = {
            **template,
            "district": f"d{i}",
            "key": sb.key,
            "secret": sb.secret,
        }
    config = config_mod.validate(doc, {}, now=NOW)

    busiest = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal busiest
        while not done.is_set():
            busy = sum(1 for sb in districts if any(e.status is None for e in sb.recorded))
            busiest = max(busiest, busy)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    reports = await check_all(config, concurrency=3, now=NOW)
    took = time.monotonic() - started
    done.set()
    await watcher
    assert [r.app for r in reports] == [f"app-{i}" for i in range(7)]
    assert all(r.ok for r in reports)
    assert 2 <= busiest <= 3, busiest
    # One check is four rounds of 0.2 s answers: seven one after another take > 5.6 s,
    # three at a time about 2.7 s.
    assert took < 5.0, took


# -- the real CLI -------------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import os

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from proxy.cli import main; main()", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, doc: dict[str, Any], name: str = "proxy.toml") -> str:
    path = tmp_path / name
    path.write_text(toml_dumps(doc))
    return str(path)


async def test_cli_check_json(sandboxes: Callable[..., Any], tmp_path: Path) -> None:
    sb = await sandboxes()
    path = write_config(tmp_path, doc_for(sb))
    code, out, err = await run_cli("check", "app-7", "--config", path, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert set(body) == {"app", "ok", "checks"}
    assert body["app"] == "app-7" and body["ok"] is True
    assert [(c["name"], c["status"]) for c in body["checks"]] == list(GREEN_OAUTH1.items())
    assert all(set(c) == {"name", "status", "detail"} for c in body["checks"])
    assert sb.secret not in out + err


async def test_cli_check_human_and_exit_codes(
    sandboxes: Callable[..., Any], tmp_path: Path
) -> None:
    sb = await sandboxes()
    good = write_config(tmp_path, doc_for(sb), "good.toml")
    code, out, _ = await run_cli("check", "app-7", "--config", good)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(CHECKS) + 1
    for line, name in zip(lines, CHECKS, strict=False):
        status, shown, _ = line.split(None, 2)
        assert shown == name and status in ("ok", "skip")
    assert lines[-1] == "app-7: ok (8 ok, 0 failed, 2 skipped)"

    bad = write_config(tmp_path, doc_for(sb, secret="wrong"), "bad.toml")
    code, out, _ = await run_cli("check", "app-7", "--config", bad)
    assert code == 1
    assert any(line.startswith("FAIL  credentials_accepted") for line in out.splitlines())
    assert out.splitlines()[-1] == "app-7: FAIL (4 ok, 1 failed, 5 skipped)"
    code, out, _ = await run_cli("check", "app-7", "--config", bad, "--json")
    assert code == 1 and json.loads(out)["ok"] is False

    code, out, err = await run_cli("check", "app-404", "--config", good)
    assert code == 2 and out == ""
    assert (
        err.strip() == f'unknown appId "app-404" (not in [connections] of {good} nor in the store)'
    )


async def test_cli_check_all(sandboxes: Callable[..., Any], tmp_path: Path) -> None:
    sb = await sandboxes()
    doc = doc_for(sb)
    template = doc["connections"]["app-7"]
    doc["connections"]["app-8"] = {**template, "secret": "wrong"}
    doc["connections"]["app-9"] = {**template, "enabled": False}
    path = write_config(tmp_path, doc)
    code, out, err = await run_cli("check", "--all", "--config", path)
    assert code == 1
    assert out.splitlines() == [
        "app-7  ok    8/10 ok, 2 skipped",
        "app-8  FAIL  credentials_accepted: the district refused the signed request: "
        'GET v1p1/orgs?limit=1 answered 401 ("OAuth signature invalid"): '
        "key/secret wrong or expired",
        "app-9  FAIL  connection_enabled: connections.app-9.enabled = false; the gateway "
        "answers 403 to every request: enable the connection",
    ]
    assert "3 connections checked, 2 failing" in err

    good = copy.deepcopy(doc)
    del good["connections"]["app-8"], good["connections"]["app-9"]
    code, out, _ = await run_cli(
        "check", "--all", "--config", write_config(tmp_path, good, "g.toml")
    )
    assert code == 0 and out == "app-7  ok    8/10 ok, 2 skipped\n"


# -- sandbox switches: students without user accounts, one OneRoster version ------------------


def _api_paths(sb: RunningSandbox) -> list[tuple[str, int | None]]:
    """(path after /ims/oneroster/, status) of every API request the sandbox received."""
    return [
        (e.raw_path.split("/ims/oneroster/", 1)[1], e.status)
        for e in sb.recorded
        if "/ims/oneroster/" in e.raw_path
    ]


async def test_no_student_user_accounts_infinite_campus(sandboxes: Callable[..., Any]) -> None:
    # Infinite Campus on OneRoster 1.1 shows students and parents only with a user account;
    # here none has one. 1.2 still shows them all, so only students_visible may fail.
    sb = await sandboxes(profile="infinite-campus", no_student_accounts=True)
    report = await check_doc(doc_for(sb))
    assert_only(report, GREEN_IC | {"students_visible": "fail"})
    text = detail(report, "students_visible")
    assert "GET v1p1/students?limit=1 answered 200 with no student (OneRoster 1.1)" in text
    assert text.endswith(
        "on OneRoster 1.1 (Infinite Campus) students and parents need user accounts"
    )
    assert ("v1p1/students?limit=1", 200) in _api_paths(sb)
    assert_no_secrets(report, sb.secret, str(sb.vendor_secret))

    # The same district checked on OneRoster 1.2 is all green: the cause is the 1.1 accounts.
    doc = doc_for(sb)
    doc["districts"]["springfield"]["versions"] = ["1.2"]
    on_1p2 = await check_doc(doc)
    assert_only(on_1p2, GREEN_IC)
    assert "120 students visible" in detail(on_1p2, "students_visible")


@pytest.mark.parametrize(
    ("auth", "served", "preferred", "fallback"),
    [
        ("oauth1", "1.2", "v1p1/orgs?limit=1", "rostering/v1p2/orgs?limit=1"),
        ("oauth2", "1.1", "rostering/v1p2/orgs?limit=1", "v1p1/orgs?limit=1"),
    ],
    ids=["oauth1-district-serves-only-1.2", "oauth2-district-serves-only-1.1"],
)
async def test_district_serving_only_the_other_version_passes_via_fallback(
    sandboxes: Callable[..., Any], auth: str, served: str, preferred: str, fallback: str
) -> None:
    # check tries 1.1 first on OAuth1 districts and 1.2 first on OAuth2 ones; a district that
    # serves only the other version answers that first probe 404 and check moves on.
    sb = await sandboxes(auth=auth, versions=(served,))
    doc = doc_for(sb)
    doc["districts"]["springfield"]["versions"] = ["1.1", "1.2"]
    report = await check_doc(doc)
    assert_only(report, GREEN_OAUTH1 if auth == "oauth1" else GREEN_OAUTH2)
    assert detail(report, "credentials_accepted") == f"signed GET {fallback} answered 200"
    students = "v1p1/students" if served == "1.1" else "rostering/v1p2/students"
    assert f"120 students visible (GET {students}?limit=1 answered 200)" in detail(
        report, "students_visible"
    )
    seen = _api_paths(sb)
    # The fallback was really taken: the preferred version was asked, signed, and said 404 ...
    assert (preferred, 404) in seen
    assert any(e.verified and e.status == 404 for e in sb.recorded)
    # ... and every item was then judged on the version the district serves.
    other_root = "v1p1/" if served == "1.2" else "rostering/v1p2/"
    judged = [(p, s) for p, s in seen if p != preferred]
    assert judged and all(s == 200 for _, s in judged), judged
    assert not any(p.startswith(other_root) for p, _ in judged), judged


async def test_configured_versions_are_probed_directly(sandboxes: Callable[..., Any]) -> None:
    # districts.X.versions naming the one version served: no probe of the other at all.
    sb = await sandboxes(versions=("1.2",))
    doc = doc_for(sb)
    doc["districts"]["springfield"]["versions"] = ["1.2"]
    report = await check_doc(doc)
    assert_only(report, GREEN_OAUTH1)
    assert "rostering/v1p2/orgs" in detail(report, "credentials_accepted")
    seen = _api_paths(sb)
    assert seen and not any(p.startswith("v1p1/") for p, _ in seen), seen


async def test_configured_version_the_district_does_not_serve(
    sandboxes: Callable[..., Any],
) -> None:
    # districts.X.versions names only 1.1 but the district serves only 1.2: the signed probe
    # meets 404, which is no credentials problem, and the operator is told which key to fix.
    sb = await sandboxes(versions=("1.2",))
    doc = doc_for(sb)
    doc["districts"]["springfield"]["versions"] = ["1.1"]
    report = await check_doc(doc)
    got = statuses(report)
    assert got["credentials_accepted"] == "fail"
    text = detail(report, "credentials_accepted")
    assert "no OneRoster 1.1 API" in text and "districts.springfield.versions" in text
    assert "1.2" in text
    for later in ("data_shared", "students_visible", "vendor_authorization"):
        assert got[later] == "skip", (later, detail(report, later))


async def test_check_reads_a_probe_answer_sent_in_pieces():
    """``check`` judges students_visible from the probe body; a district that streams its
    JSON in several writes must not look like one that returned no students."""
    import json

    from aiohttp import web

    from proxy import config as config_mod
    from proxy.check import run_check

    async def district(request: web.Request) -> web.StreamResponse:
        collection = request.path.rstrip("/").rsplit("/", 1)[-1]
        record = {"sourcedId": "s-1", "role": "student", "status": "active"}
        body = json.dumps({collection: [record]}).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), 8):
            await response.write(body[start : start + 8])
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", district)
    runner, port = await serve_on_loopback(app)
    doc = {
        "server": {"upstream_timeout": "3s"},
        # The CLI keeps each check's result in the store: a file of this test run's own.
        "store": {"url": f"sqlite://{STORE_DIR}/store.db"},
        "vendors": {"acme": {}},
        "districts": {"springfield": {"base_url": f"http://127.0.0.1:{port}", "auth": "oauth1"}},
        "connections": {
            "app-7": {
                "vendor": "acme",
                "district": "springfield",
                "key": "k",
                "secret": "s",
                "scopes": ["roster-core.readonly"],
            }
        },
    }
    try:
        report = await run_check(config_mod.validate(doc, {}), "app-7")
        item = report.item("students_visible")
        assert item.status == "ok", item.detail
    finally:
        await runner.cleanup()


async def test_cli_check_not_paused_fails_during_a_pause_and_warns_before_one(
    sandboxes: Callable[..., Any], tmp_path: Path
) -> None:
    """docs/checklist.md ``not_paused``, in its place in the list (run against today's date)."""
    sb = await sandboxes()
    today = dt.datetime.now(dt.UTC).date()
    doc = doc_for(sb)
    doc["districts"]["springfield"]["pauses"] = [
        {"from": today - dt.timedelta(days=1), "to": today + dt.timedelta(days=1),
         "reason": "summer rollover"},
    ]  # fmt: skip
    code, out, _ = await run_cli("check", "app-7", "--config", write_config(tmp_path, doc))
    assert code == 1
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == list(CHECKS)
    paused = lines[CHECKS.index("not_paused")]
    assert paused.startswith("FAIL  not_paused")
    assert "summer rollover" in paused and (today + dt.timedelta(days=1)).isoformat() in paused
    assert paused.endswith(HINTS["not_paused"])
    soon = today + dt.timedelta(days=10)
    doc["districts"]["springfield"]["pauses"] = [
        {"from": soon, "to": soon + dt.timedelta(days=40), "reason": "summer rollover"}
    ]
    code, out, _ = await run_cli(
        "check", "app-7", "--config", write_config(tmp_path, doc, "soon.toml"), "--json"
    )
    assert code == 0
    item = {c["name"]: c for c in json.loads(out)["checks"]}["not_paused"]
    assert item["status"] == "ok" and item["detail"].startswith("warning:")
    assert soon.isoformat() in item["detail"]
