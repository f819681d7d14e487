"""``drop_fields`` as configuration: TOML connections (``config validate``), store connections
through the admin API and the CLI, each bad entry named, a refused change writing nothing
(docs/configuration.md "Sharing policy", docs/commands.md, docs/http-api.md)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from proxy.config import validate
from proxy.errors import ConfigError
from proxy.store.crypto import new_key
from tests.admin.test_connections import call, connection_body
from tests.cli.test_tokens import run_cli
from tests.config.test_validate import minimal
from tests.support import auth, base_config


def test_default_and_valid_entries() -> None:
    assert validate(minimal(), {}).connections["app-7"].drop_fields == ("users.password",)
    fields = ["users.phone", "students.sms", "*.metadata", "schools.identifier"]
    assert validate(minimal(drop_fields=fields), {}).connections["app-7"].drop_fields == tuple(
        fields
    )
    assert validate(minimal(drop_fields=[]), {}).connections["app-7"].drop_fields == ()


def test_bad_entries_are_named() -> None:
    bad = ["users", "users.", "pupils.phone", "demographics.birthDate", 7, "users.a.b", "*."]
    with pytest.raises(ConfigError) as err:
        validate(minimal(drop_fields=bad), {})
    problems = err.value.problems
    for i in range(len(bad)):
        assert any(p.startswith(f"connections.app-7.drop_fields[{i}]:") for p in problems), i
    assert any('unknown collection "pupils"' in p for p in problems)
    assert any("scopes never give demographics" in p for p in problems)
    with pytest.raises(ConfigError) as err:
        validate(minimal(drop_fields="users.password"), {})
    assert err.value.problems == [
        'connections.app-7.drop_fields: must be a list such as ["users.password"]'
    ]


@pytest.fixture
async def proxy(sandbox: Any, start_proxy: Any, tmp_path: Any) -> Any:
    doc = base_config(tmp_path, sandbox)
    doc["store"]["secret_keys"] = [new_key()]
    return await start_proxy(sandbox, doc)


async def test_store_connections_through_the_admin_api_and_the_cli(
    proxy: Any, sandbox: Any, http: aiohttp.ClientSession
) -> None:
    body = connection_body(sandbox, drop_fields=["users.phone", "gradebook.x", "users."])
    status, answer = await call(http, proxy, "POST", "/admin/connections", body)
    assert status == 400
    assert any(e.startswith("drop_fields[1]:") for e in answer["errors"]), answer
    assert any(e.startswith("drop_fields[2]:") for e in answer["errors"]), answer
    assert await proxy.services.store.get_connection("store-1") is None

    status, made = await call(http, proxy, "POST", "/admin/connections", connection_body(sandbox))
    assert status == 201 and made["drop_fields"] == ["users.password"]
    status, made = await call(
        http, proxy, "PATCH", "/admin/connections/store-1", {"drop_fields": ["users.phone"]}
    )
    assert status == 200 and made["drop_fields"] == ["users.phone"]
    status, _ = await call(
        http, proxy, "PATCH", "/admin/connections/store-1", {"drop_fields": ["nope.x"]}
    )
    assert status == 400
    assert (await proxy.services.store.get_connection("store-1")).drop_fields == ("users.phone",)

    # The gateway serves the store connection with its policy: phone gone, password kept.
    vendor = await proxy.token()
    async with http.get(proxy.app_url("v1p1/users?limit=3", "store-1"), headers=auth(vendor)) as r:
        users = (await r.json())["users"]
    assert users and all("phone" not in u and "password" in u for u in users)

    config = str(proxy.config_path)
    code, out, err = await run_cli(
        "connections", "update", "store-1", "--config", config, "--drop-fields", "", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["drop_fields"] == []
    code, _, err = await run_cli(
        "connections", "update", "store-1", "--config", config, "--drop-fields", "users.,x.y"
    )
    assert code == 2 and "connections.store-1.drop_fields[0]" in err
    assert "connections.store-1.drop_fields[1]" in err
    assert (await proxy.services.store.get_connection("store-1")).drop_fields == ()


def test_ledger_days() -> None:
    assert validate(minimal(), {}).store.ledger_days == 400
    doc = minimal()
    doc["store"] = {"ledger_days": 30}
    assert validate(doc, {}).store.ledger_days == 30
    doc["store"] = {"ledger_days": 0}
    with pytest.raises(ConfigError) as err:
        validate(doc, {})
    assert err.value.problems == ["store.ledger_days: must be an integer >= 1"]


async def test_config_validate_names_each_bad_entry(tmp_path: Any) -> None:
    from tests.support import toml_dumps

    doc = minimal(drop_fields=["users.phone", "pupils.phone", "users."])
    path = tmp_path / "bad.toml"
    path.write_text(toml_dumps(doc))
    code, out, err = await run_cli("config", "validate", str(path))
    assert code == 1  # an invalid file (docs/commands.md, config validate)
    lines = (out + err).splitlines()
    assert any("connections.app-7.drop_fields[1]" in line and "pupils" in line for line in lines)
    assert any("connections.app-7.drop_fields[2]" in line for line in lines)
    assert not any("drop_fields[0]" in line for line in lines)
