"""The admin API for districts and connections (docs/commands.md), against a
real proxy and the sandbox district: every route, every refusal (400 with every problem, 404,
409) leaving nothing written, the gateway following each change, the audit trail."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from proxy.store.crypto import new_key
from tests.support import ADMIN_TOKEN, base_config, get_json

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET_MARK = "s3cr3t-never-shown"


@pytest.fixture
async def proxy(sandbox, start_proxy, tmp_path):
    doc = base_config(tmp_path, sandbox)
    doc["store"]["secret_keys"] = [new_key()]
    return await start_proxy(sandbox, doc)


async def call(
    http: aiohttp.ClientSession, proxy: Any, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, f"{proxy.admin_url}{path}", headers=ADMIN, json=body) as resp:
        text = await resp.text()
        assert SECRET_MARK not in text
        return resp.status, json.loads(text) if text else None


def connection_body(sandbox: Any, app_id: str = "store-1", **fields: Any) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "vendor": "acme",
        "district": "springfield",
        "key": sandbox.key,
        "secret": sandbox.secret,
        "scopes": ["roster-core.readonly"],
        **fields,
    }


async def audit_actions(proxy: Any) -> list[tuple[str, str, Any]]:
    events = await proxy.services.store.list_audit()
    for event in events:
        assert SECRET_MARK not in json.dumps(event.detail)
    return [
        (e.action, e.interface, e.detail.get("app_id"))
        for e in events
        if e.action.startswith(("district.", "connection."))
    ]


async def test_district_routes(proxy, sandbox, http):
    status, made = await call(
        http,
        proxy,
        "POST",
        "/admin/districts",
        {"name": "shelbyville", "base_url": sandbox.base_url, "max_connections": 5,
         "versions": ["1.1"], "max_wait": "5s"},
    )  # fmt: skip
    assert status == 201, made
    assert made["source"] == "store" and made["versions"] == ["1.1"] and made["max_wait"] == "5s"
    status, listed = await call(http, proxy, "GET", "/admin/districts")
    names = {(d["name"], d["source"]) for d in listed["districts"]}
    assert names == {("shelbyville", "store"), ("springfield", "config")}
    status, one = await call(http, proxy, "GET", "/admin/districts/shelbyville")
    assert status == 200 and one["max_connections"] == 5
    status, changed = await call(
        http, proxy, "PATCH", "/admin/districts/shelbyville", {"max_connections": 2}
    )
    assert status == 200 and changed["max_connections"] == 2 and changed["versions"] == ["1.1"]
    assert (await call(http, proxy, "GET", "/admin/districts/nowhere"))[0] == 404
    assert (await call(http, proxy, "PATCH", "/admin/districts/springfield", {}))[0] == 409
    assert (await call(http, proxy, "DELETE", "/admin/districts/shelbyville"))[0] == 200
    assert (await call(http, proxy, "DELETE", "/admin/districts/shelbyville"))[0] == 404
    actions = [a for a, _, _ in await audit_actions(proxy)]
    assert actions == ["district.add", "district.update", "district.remove"]


async def test_bad_district_input_lists_every_problem_and_writes_nothing(proxy, http):
    status, body = await call(
        http,
        proxy,
        "POST",
        "/admin/districts",
        {"name": "bad name", "base_url": "ftp://x", "auth": "kerberos", "max_connections": 0,
         "colour": "red"},
    )  # fmt: skip
    assert status == 400
    problems = body["errors"]
    assert any(p.startswith("name: district name must be") for p in problems), problems
    assert any(p.startswith("base_url: invalid URL") for p in problems)
    assert 'auth: must be "oauth1" or "oauth2", not "kerberos"' in problems
    assert "max_connections: must be an integer >= 1" in problems
    assert "colour: unknown key" in problems
    status, taken = await call(
        http,
        proxy,
        "POST",
        "/admin/districts",
        {"name": "springfield", "base_url": "https://x.example"},
    )
    assert status == 409 and "springfield" in taken["errors"][0]
    assert await proxy.services.store.list_districts() == []
    assert await audit_actions(proxy) == []


async def test_connection_routes_and_the_gateway_follows(proxy, sandbox, http):
    token = await proxy.token()
    status, made = await call(http, proxy, "POST", "/admin/connections", connection_body(sandbox))
    assert status == 201, made
    assert made["appId"] == "store-1" and made["source"] == "store" and "secret" not in made
    # This process answers with the new connection at once.
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200

    status, listed = await call(http, proxy, "GET", "/admin/connections")
    sources = {c["appId"]: c["source"] for c in listed["connections"]}
    assert sources == {"app-7": "config", "app-8": "config", "store-1": "store"}
    assert listed["next"] is None
    status, one = await call(http, proxy, "GET", "/admin/connections/store-1")
    assert status == 200 and one["base_url"] == sandbox.base_url and one["last_check"] is None

    status, changed = await call(
        http, proxy, "PATCH", "/admin/connections/store-1", {"enabled": False}
    )
    assert status == 200 and changed["enabled"] is False
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 403
    await call(http, proxy, "PATCH", "/admin/connections/store-1", {"enabled": True})

    sandbox.accept_credentials("renewed-key", SECRET_MARK)
    status, renewed = await call(
        http,
        proxy,
        "PUT",
        "/admin/connections/store-1/credentials",
        {"key": "renewed-key", "secret": SECRET_MARK, "expires": "2031-01-31"},
    )
    assert status == 200 and renewed["key"] == "renewed-key"
    assert renewed["expires"] == "2031-01-31"
    mark = len(sandbox.recorded)
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200
    signed = [v for r in sandbox.recorded[mark:] for k, v in r.headers if k == "Authorization"]
    assert len(signed) == 1 and 'oauth_consumer_key="renewed-key"' in signed[0]

    status, report = await call(http, proxy, "POST", "/admin/connections/store-1/check")
    assert status == 200 and report["app"] == "store-1", report

    assert (await call(http, proxy, "DELETE", "/admin/connections/store-1"))[0] == 200
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 404
    assert (await call(http, proxy, "DELETE", "/admin/connections/store-1"))[0] == 404
    assert (await call(http, proxy, "GET", "/admin/connections/store-1"))[0] == 404
    assert await audit_actions(proxy) == [
        ("connection.add", "admin", "store-1"),
        ("connection.update", "admin", "store-1"),
        ("connection.update", "admin", "store-1"),
        ("connection.renew", "admin", "store-1"),
        ("connection.remove", "admin", "store-1"),
    ]


async def test_bad_connection_input_every_problem_nothing_written(proxy, sandbox, http):
    body = connection_body(
        sandbox, app_id="..", scopes=["roster-core.readonly", "gradebook.write"], expires="soon"
    )
    del body["secret"]
    body["district"] = "atlantis"
    status, answer = await call(http, proxy, "POST", "/admin/connections", body)
    assert status == 400
    problems = answer["errors"]
    assert any(p.startswith("app_id: appId must be") for p in problems), problems
    assert 'scopes[1]: unknown scope "gradebook.write"' in problems
    assert "secret: required" in problems
    assert 'district: no district "atlantis" in [districts] or the store' in problems
    assert any(p.startswith("expires: invalid date") for p in problems)

    # Values are taken as written: no environment look-up through the API.
    leak = connection_body(sandbox, app_id="store-9", key="${ORP_ADMIN_TOKEN}")
    status, answer = await call(http, proxy, "POST", "/admin/connections", leak)
    assert status == 400 and answer["errors"] == ["key: must not contain ${...}"]

    status, answer = await call(
        http, proxy, "POST", "/admin/connections", connection_body(sandbox, "app-7")
    )
    assert status == 409 and "app-7" in answer["errors"][0]
    assert (await call(http, proxy, "POST", "/admin/connections", connection_body(sandbox)))[
        0
    ] == 201
    status, answer = await call(http, proxy, "POST", "/admin/connections", connection_body(sandbox))
    assert status == 409
    status, answer = await call(
        http, proxy, "PATCH", "/admin/connections/store-1", {"scopes": ["nope"], "key": "k"}
    )
    assert status == 400 and set(answer["errors"]) == {
        "key: cannot be changed here; use renew",
    }
    status, answer = await call(
        http, proxy, "PATCH", "/admin/connections/store-1", {"scopes": ["nope"]}
    )
    assert status == 400 and answer["errors"] == ['scopes[0]: unknown scope "nope"']
    status, answer = await call(
        http, proxy, "PUT", "/admin/connections/store-1/credentials", {"key": "k2"}
    )
    assert status == 400 and answer["errors"] == ["secret: required"]
    assert (await call(http, proxy, "PATCH", "/admin/connections/app-7", {"enabled": False}))[
        0
    ] == 409
    assert (await call(http, proxy, "PATCH", "/admin/connections/ghost", {}))[0] == 404
    status, answer = await call(
        http, proxy, "POST", "/admin/districts", {"name": "d2", "base_url": sandbox.base_url}
    )
    await call(
        http,
        proxy,
        "POST",
        "/admin/connections",
        connection_body(sandbox, "store-2", district="d2"),
    )
    status, answer = await call(http, proxy, "DELETE", "/admin/districts/d2")
    assert status == 409 and "store-2" in answer["errors"][0]

    record = await proxy.services.store.get_connection("store-1")
    assert record.key == sandbox.key and record.scopes == ("roster-core.readonly",)
    listed = await proxy.services.store.list_connections()
    assert [c.app_id for c in listed] == ["store-1", "store-2"]
    assert [a for a, _, _ in await audit_actions(proxy)] == [
        "connection.add",
        "district.add",
        "connection.add",
    ]


async def test_without_secret_keys_adding_a_secret_is_refused_naming_the_key(
    sandbox, start_proxy, http
):
    proxy = await start_proxy(sandbox)  # base_config has no secret_keys
    body = connection_body(sandbox)
    status, answer = await call(http, proxy, "POST", "/admin/connections", body)
    assert status == 400 and len(answer["errors"]) == 1
    assert "store.secret_keys" in answer["errors"][0]
    assert await proxy.services.store.list_connections() == []


async def test_the_admin_token_is_required(proxy, http):
    async with http.post(f"{proxy.admin_url}/admin/districts", json={}) as resp:
        assert resp.status == 401


async def test_invite_refusals_are_errors_lists_with_every_problem(proxy, http):
    """POST /admin/connections/{appId}/invite answers like the other store routes: 400 with
    every problem of the body, 404 for an unknown vendor, 409 for a config connection."""
    status, body = await call(
        http,
        proxy,
        "POST",
        "/admin/connections/new-9/invite",
        {"vendor": "", "scopes": ["roster-core.readonly", "bogus"], "ttl": "x"},
    )
    assert status == 400
    assert body["errors"][0] == "vendor: required"
    assert body["errors"][1] == 'scopes[1]: unknown scope "bogus"'
    assert body["errors"][2].startswith("ttl: ")
    status, body = await call(http, proxy, "POST", "/admin/connections/new-9/invite", "[]")
    assert status == 400 and body["errors"]
    status, body = await call(
        http, proxy, "POST", "/admin/connections/new-9/invite", {"vendor": "nobody"}
    )
    assert status == 404 and "nobody" in body["errors"][0]
    status, body = await call(
        http, proxy, "POST", "/admin/connections/app-7/invite", {"vendor": "acme"}
    )
    assert status == 409 and "app-7" in body["errors"][0]
    status, made = await call(
        http, proxy, "POST", "/admin/connections/new-9/invite", {"vendor": "acme"}
    )
    assert status == 201 and "/intake/" in made["url"]
    assert [a for a in await audit_actions(proxy) if a[0] == "connection.invite"] == [
        ("connection.invite", "admin", "new-9")
    ]


async def test_a_body_without_its_name_still_lists_every_problem(proxy, http):
    """A missing ``name`` / ``app_id`` is one problem among the others, not the only one."""
    status, body = await call(
        http, proxy, "POST", "/admin/districts", {"base_url": "ftp://x", "auth": "kerberos"}
    )
    assert status == 400
    assert body["errors"][0] == "name: required (a string)"
    assert any(p.startswith("base_url: invalid URL") for p in body["errors"]), body
    assert 'auth: must be "oauth1" or "oauth2", not "kerberos"' in body["errors"]
    status, body = await call(
        http, proxy, "POST", "/admin/connections", {"vendor": "nobody", "scopes": ["bogus"]}
    )
    assert status == 400
    problems = body["errors"]
    assert problems[0] == "app_id: required (a string)"
    assert 'vendor: no vendor "nobody" in [vendors]' in problems, problems
    assert 'scopes[0]: unknown scope "bogus"' in problems
    assert {"district: required", "key: required", "secret: required"} <= set(problems)
    assert not any("unnamed" in p for p in problems)
    assert await proxy.services.store.list_districts() == []
    assert await audit_actions(proxy) == []


@pytest.mark.parametrize(
    ("path", "problem", "prefix"),
    [
        # The store routes list problems by field; the token routes answer imsx.
        ("/admin/districts", lambda data: data["errors"], "body: "),
        ("/admin/vendors/acme/tokens", lambda data: [data["imsx_description"]], "the body "),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_400_naming_the_body(
    proxy, http, path, problem, prefix
):
    for raw, says in ((b"{not json", "must be JSON"), (b"[1, 2]", "must be a JSON object")):
        async with http.post(f"{proxy.admin_url}{path}", headers=ADMIN, data=raw) as resp:
            assert resp.status == 400
            assert problem(await resp.json()) == [prefix + says]


# -- SIS courtesy on store districts (docs/configuration.md "SIS courtesy") ---------------------


async def test_store_district_windows_and_pauses_and_the_gateway_follows(proxy, sandbox, http):
    from datetime import UTC, datetime

    token = await proxy.token()
    window = {"days": "mon-fri", "from": "07:00", "to": "16:00", "max_connections": 1}
    status, made = await call(
        http,
        proxy,
        "POST",
        "/admin/districts",
        {"name": "shelbyville", "base_url": sandbox.base_url, "timezone": "America/Chicago",
         "windows": [window]},
    )  # fmt: skip
    assert status == 201, made
    assert made["timezone"] == "America/Chicago" and made["windows"] == [window]
    assert made["pauses"] == []
    body = connection_body(sandbox, district="shelbyville")
    assert (await call(http, proxy, "POST", "/admin/connections", body))[0] == 201
    assert (await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token))[0] == 200

    pause = {"from": "2027-06-20", "to": "2027-08-01", "reason": "summer rollover"}
    status, changed = await call(
        http, proxy, "PATCH", "/admin/districts/shelbyville", {"pauses": [pause]}
    )
    assert status == 200 and changed["pauses"] == [pause] and changed["windows"] == [window]
    proxy.services.store_connections.forget()
    proxy.services.limits.wall = lambda: datetime(2027, 7, 1, 12, tzinfo=UTC).timestamp()
    status, data, _ = await get_json(http, proxy.app_url("v1p1/orgs", "store-1"), token)
    assert status == 503 and "summer rollover" in data["imsx_description"]
    async with http.get(
        f"{proxy.url}/applications", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        apps = {a["appId"]: a for a in (await r.json())["applications"]}
    assert apps["store-1"]["paused_until"] == "2027-08-01"
    assert apps["app-7"]["paused_until"] is None


async def test_bad_courtesy_input_names_each_key_and_keeps_nothing(proxy, sandbox, http):
    window = {"days": "mon-fri", "from": "07:00", "to": "16:00", "max_connections": 1}
    status, _ = await call(
        http, proxy, "POST", "/admin/districts",
        {"name": "shelbyville", "base_url": sandbox.base_url, "windows": [window]},
    )  # fmt: skip
    assert status == 201
    before = await proxy.services.store.get_district("shelbyville")
    status, body = await call(
        http,
        proxy,
        "PATCH",
        "/admin/districts/shelbyville",
        {"timezone": "Mars/Olympus", "max_connections": 0,
         "windows": [window, {**window, "days": "fri", "from": "15:00", "to": "17:00"}],
         "pauses": [{"from": "2027-08-01", "to": "2027-06-20", "reason": "summer"}]},
    )  # fmt: skip
    assert status == 400
    problems = body["errors"]
    assert any(p.startswith('timezone: unknown time zone "Mars/Olympus"') for p in problems)
    assert "max_connections: must be an integer >= 1" in problems
    assert any(p.startswith("windows[1]: overlaps windows[0]") for p in problems), problems
    assert "pauses[0].to: 2027-06-20 is before from = 2027-08-01" in problems
    status, body = await call(
        http, proxy, "PATCH", "/admin/districts/shelbyville",
        {"windows": [{**window, "from": "16:00", "to": "07:00", "max_connections": 0}]},
    )  # fmt: skip
    assert status == 400
    assert "windows[0].max_connections: must be an integer >= 1" in body["errors"]
    assert any(p.startswith("windows[0].to: 07:00 is not after") for p in body["errors"])
    assert await proxy.services.store.get_district("shelbyville") == before


async def test_a_district_url_with_a_password_is_400_naming_the_field(proxy, http, sandbox):
    """``https://user:pass@host`` is refused by the admin API (a new district, and a change to
    one), naming the field; nothing is written and the password is not echoed."""
    bad = sandbox.base_url.replace("http://", "http://sis:hunter2-pw@")
    status, body = await call(
        http, proxy, "POST", "/admin/districts", {"name": "d3", "base_url": bad}
    )
    assert status == 400 and "hunter2" not in str(body)
    assert "base_url: must not contain a user name or password (user:pass@)" in body["errors"]
    await call(
        http, proxy, "POST", "/admin/districts", {"name": "d3", "base_url": sandbox.base_url}
    )
    status, body = await call(http, proxy, "PATCH", "/admin/districts/d3", {"base_url": bad})
    assert status == 400 and "hunter2" not in str(body)
    stored = await proxy.services.store.get_district("d3")
    assert stored is not None and stored.base_url == sandbox.base_url
