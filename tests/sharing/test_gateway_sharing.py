"""What a vendor receives through the proxy from the real sandbox district, and the ledger of
it (docs/configuration.md "Sharing policy", docs/http-api.md ``GET /admin/ledger``,
docs/commands.md ``ledger``)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import aiohttp

from tests.cli.test_tokens import run_cli
from tests.support import ADMIN_TOKEN, auth, base_config

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _get(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, Any, Any]:
    async with http.get(url, headers=auth(token)) as resp:
        return resp.status, await resp.read(), resp.headers


async def test_default_policy_drops_the_1_1_password_everywhere(
    sandbox: Any, start_proxy: Any, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    doc = base_config(tmp_path, sandbox)
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    open_doc = base_config(tmp_path / "open", sandbox)
    (tmp_path / "open").mkdir()
    open_doc["connections"]["app-7"]["drop_fields"] = []
    open_proxy = await start_proxy(sandbox, open_doc)
    open_token = await open_proxy.token()

    status, body, headers = await _get(http, proxy.app_url("v1p1/users?limit=50"), token)
    assert status == 200
    users = json.loads(body)["users"]
    assert users and all("password" not in u for u in users)
    # The district's answer has it (drop_fields = [] passes everything, byte for byte but
    # for the rewritten Links).
    status, raw, raw_headers = await _get(
        http, open_proxy.app_url("v1p1/users?limit=50"), open_token
    )
    assert all("password" in u for u in json.loads(raw)["users"])
    assert headers["X-Total-Count"] == raw_headers["X-Total-Count"]
    # Everything else byte for byte: the district's body less each password member.
    expected = raw
    for user in json.loads(raw)["users"]:
        expected = expected.replace(
            b',"password":' + json.dumps(user["password"]).encode(), b""
        ).replace(b', "password": ' + json.dumps(user["password"]).encode(), b"")
    # Each proxy points the records' hrefs at itself (rewrite_hrefs); the rest is the same.
    assert body == expected.replace(open_proxy.url.encode(), proxy.url.encode())

    # A relationship collection, a single record, and a large streamed page.
    class_id = json.loads((await _get(http, proxy.app_url("v1p1/classes?limit=1"), token))[1])[
        "classes"
    ][0]["sourcedId"]
    for rest in (
        f"v1p1/classes/{class_id}/students",
        f"v1p1/users/{users[0]['sourcedId']}",
        "v1p1/students?limit=5000",
    ):
        status, body, _ = await _get(http, proxy.app_url(rest), token)
        assert status == 200, rest
        assert b'"password"' not in body, rest
        json.loads(body)
    # 1.2 users have no password: the answer is the district's own.
    status, body, _ = await _get(http, proxy.app_url("rostering/v1p2/users?limit=5"), token)
    assert status == 200 and b"password" not in body


async def test_drop_fields_of_a_connection_and_the_ledger(
    sandbox: Any, start_proxy: Any, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    doc = base_config(tmp_path, sandbox)
    doc["connections"]["app-7"]["drop_fields"] = ["users.phone", "users.sms", "*.metadata"]
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    status, body, _ = await _get(http, proxy.app_url("rostering/v1p2/users?limit=7"), token)
    users = json.loads(body)["users"]
    assert len(users) == 7
    assert not any({"phone", "sms", "metadata"} & set(u) for u in users)
    # Not in the list: the 1.1 password goes out (the list replaced the default).
    status, body, _ = await _get(http, proxy.app_url("v1p1/users?limit=3"), token)
    assert all("password" in u for u in json.loads(body)["users"])
    status, _, _ = await _get(http, proxy.app_url("v1p1/users/nobody-such"), token)
    assert status == 404

    async with http.get(f"{proxy.admin_url}/admin/ledger?app=app-7", headers=ADMIN) as resp:
        assert resp.status == 200
        rows = await resp.json()
    users_row = next(r for r in rows if r["collection"] == "users")
    assert users_row["app"] == "app-7" and users_row["vendor"] == "acme"
    assert users_row["district"] == "springfield"
    assert users_row["requests"] == 3 and users_row["records"] == 10
    assert users_row["status"] == {"2xx": 2, "4xx": 1}
    assert "givenName" in users_row["fields"] and "password" in users_row["fields"]
    assert not {"phone", "sms", "metadata"} & set(users_row["fields"])
    assert users_row["bytes"] > 0
    # Counts and names only: no value of a record is in the ledger.
    assert users[0]["givenName"] not in json.dumps(rows)

    async with http.get(f"{proxy.admin_url}/admin/ledger?since=yesterday", headers=ADMIN) as r:
        assert r.status == 400 and "since" in (await r.text())
    async with http.get(f"{proxy.admin_url}/admin/ledger?vendor=other", headers=ADMIN) as r:
        assert await r.json() == []
    async with http.get(f"{proxy.admin_url}/admin/ledger") as r:
        assert r.status == 401

    config = str(proxy.config_path)
    code, out, err = await run_cli("ledger", "app-7", "--config", config, "--json")
    assert code == 0, err
    assert json.loads(out) == rows
    code, out, _ = await run_cli("ledger", "--config", config, "--csv", "--since", "1d")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert parsed[0]["app"] == "app-7" and "givenName" in parsed[0]["fields"].split()
    code, out, _ = await run_cli("ledger", "--config", config, "--vendor", "acme")
    assert "app-7" in out and "fields delivered" in out
    code, _, err = await run_cli("ledger", "--config", config, "--since", "soon")
    assert code != 0 and "--since" in err


async def test_counts_reach_the_store_when_the_proxy_stops(
    sandbox: Any, start_proxy: Any, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    from proxy.store.sqlite import SqliteStore

    proxy = await start_proxy(sandbox)
    token = await proxy.token()
    status, _, _ = await _get(http, proxy.app_url("rostering/v1p2/classes?limit=2"), token)
    assert status == 200
    await proxy.stop()  # the drain writes what the periodic flush has not yet
    async with SqliteStore(str(tmp_path / "store.db")) as store:
        (row,) = await store.list_ledger(app="app-7")
    assert (row.collection, row.requests, row.records) == ("classes", 1, 2)


async def test_a_vendor_cannot_ask_for_a_compressed_answer_the_policy_cannot_read(
    sandbox: Any, start_proxy: Any, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    from proxy.sandbox.state import RECORDED

    proxy = await start_proxy(sandbox)
    token = await proxy.token()
    headers = {**auth(token), "Accept-Encoding": "gzip, br"}
    for rest, expected in (
        ("v1p1/users?limit=1", "identity"),
        ("v1p1/classes?limit=1", "gzip, br"),
    ):
        before = len(sandbox.app[RECORDED])
        async with http.get(proxy.app_url(rest), headers=headers) as resp:
            assert resp.status == 200
        (sent,) = sandbox.app[RECORDED][before:]
        got = [v for k, v in sent.headers if k.lower() == "accept-encoding"]
        assert got == [expected], rest  # where no rule applies, the vendor's own choice
