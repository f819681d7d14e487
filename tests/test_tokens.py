"""Rotation keeps the TTL, and revocation by id, whole token or listed prefix, through the real
CLI and admin API against a running proxy (docs/http-api.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from proxy.store.base import TokenRecord
from proxy.tokens import hash_secret, now_utc
from tests.cli.test_tokens import (
    CACHE_TTL,
    cli_token,
    list_json,
    run_cli,
    status_of,
    token_id,
    wait_for_status,
)
from tests.support import ADMIN_TOKEN, assert_imsx, auth

ADMIN = auth(ADMIN_TOKEN)


def lifetime(row: dict[str, Any]) -> timedelta | None:
    if row["expires"] is None:
        return None
    created = datetime.fromisoformat(row["created"].replace("Z", "+00:00"))
    return datetime.fromisoformat(row["expires"].replace("Z", "+00:00")) - created


async def listed(proxy: Any, token: str) -> dict[str, Any]:
    rows = {r["id"]: r for r in await list_json(proxy.config_path, "acme")}
    return rows[token_id(token)]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def about(got: timedelta | None, want: timedelta) -> bool:
    return got is not None and abs(got - want) < timedelta(seconds=2)


async def test_cli_rotate_keeps_the_newest_tokens_ttl_unless_ttl_is_given(proxy, http):
    cfg = str(proxy.config_path)
    url = proxy.app_url("v1p1/orgs")
    first = await cli_token("tokens", "issue", "acme", "--config", cfg, "--ttl", "90d")
    second = await cli_token("tokens", "rotate", "acme", "--config", cfg, "--grace", "0s")
    assert about(lifetime(await listed(proxy, second)), timedelta(days=90))
    await wait_for_status(http, url, first, 401, CACHE_TTL + 5)
    assert await status_of(http, url, second) == 200

    third = await cli_token(
        "tokens", "rotate", "acme", "--config", cfg, "--grace", "1h", "--ttl", "2h"
    )
    assert about(lifetime(await listed(proxy, third)), timedelta(hours=2))
    # The older 90-day token now ends with the grace: an hour after the new one was issued.
    third_row, second_row = await listed(proxy, third), await listed(proxy, second)
    assert when(second_row["expires"]) == when(third_row["created"]) + timedelta(hours=1)
    fourth = await cli_token("tokens", "rotate", "acme", "--config", cfg, "--grace", "0s")
    assert about(lifetime(await listed(proxy, fourth)), timedelta(hours=2))
    assert await status_of(http, url, fourth) == 200

    # A vendor whose newest token never expires rotates into one that never expires.
    never = await cli_token("tokens", "issue", "acme", "--config", cfg)
    fifth = await cli_token("tokens", "rotate", "acme", "--config", cfg, "--grace", "0s")
    assert lifetime(await listed(proxy, never)) is not None  # ended by the rotation
    assert (await listed(proxy, fifth))["expires"] is None


async def test_admin_rotate_needs_grace_and_keeps_the_ttl(proxy, http):
    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with http.request(method, proxy.admin_url + path, json=body, headers=ADMIN) as resp:
            return resp.status, await resp.json()

    status, issued = await call("POST", "/admin/vendors/acme/tokens", {"ttl": "24h"})
    assert status == 201
    rotate = "/admin/vendors/acme/tokens/rotate"
    for body in (None, {}, {"ttl": "1h"}):
        status, data = await call("POST", rotate, body)
        assert status == 400, (body, data)
        assert_imsx(data)
        assert "grace" in data["imsx_description"]
    # Nothing was rotated by the refusals.
    assert await status_of(http, proxy.app_url("v1p1/orgs"), issued["token"]) == 200

    status, rotated = await call("POST", rotate, {"grace": "0s"})
    assert status == 201, rotated
    assert about(lifetime(rotated), timedelta(hours=24))
    assert await status_of(http, proxy.app_url("v1p1/orgs"), issued["token"]) == 401
    status, shorter = await call("POST", rotate, {"grace": "0s", "ttl": "1h"})
    assert status == 201 and about(lifetime(shorter), timedelta(hours=1))


async def test_revoke_takes_an_id_a_whole_token_or_its_listed_prefix(proxy, http):
    cfg = str(proxy.config_path)
    url = proxy.app_url("v1p1/orgs")
    by_token, by_prefix, by_id = [
        await cli_token("tokens", "issue", "acme", "--config", cfg) for _ in range(3)
    ]
    for token in (by_token, by_prefix, by_id):
        assert await status_of(http, url, token) == 200

    code, out, err = await run_cli("tokens", "revoke", by_token, "--config", cfg)
    assert code == 0, err
    assert token_id(by_token) in out and by_token not in out + err
    prefix = (await listed(proxy, by_prefix))["prefix"]
    code, out, err = await run_cli("tokens", "revoke", prefix, "--config", cfg)
    assert code == 0, err
    assert token_id(by_prefix) in out
    code, out, err = await run_cli("tokens", "revoke", token_id(by_id), "--config", cfg)
    assert code == 0, err
    for token in (by_token, by_prefix, by_id):
        await wait_for_status(http, url, token, 401, CACHE_TTL + 5)

    # A token of the right shape and id but another secret names nothing, and is not echoed.
    survivor = await cli_token("tokens", "issue", "acme", "--config", cfg)
    forged = survivor[:-4] + ("AAAA" if not survivor.endswith("AAAA") else "BBBB")
    code, out, err = await run_cli("tokens", "revoke", forged, "--config", cfg)
    assert code == 1 and forged not in out + err and survivor not in out + err
    assert await status_of(http, url, survivor) == 200


async def test_an_ambiguous_prefix_is_refused_and_revokes_nothing(proxy, http):
    store = proxy.services.store
    for token_id_ in ("zq0000000001", "zq0000000002"):
        await store.add_token(
            TokenRecord(
                id=token_id_,
                vendor="acme",
                secret_hash=hash_secret("x"),
                prefix=f"orp_{token_id_}_abcd",
                created=now_utc(),
            )
        )
    cfg = str(proxy.config_path)
    code, out, err = await run_cli("tokens", "revoke", "orp_zq00", "--config", cfg)
    assert code == 1, out
    assert "ambiguous" in err and "zq0000000001" in err and "zq0000000002" in err
    assert all(r["expires"] is None for r in await list_json(proxy.config_path, "acme"))
    async with http.delete(f"{proxy.admin_url}/admin/tokens/orp_zq00", headers=ADMIN) as resp:
        assert resp.status == 400
        assert "ambiguous" in (await resp.json())["imsx_description"]
    # The admin API takes a listed prefix too.
    async with http.delete(
        f"{proxy.admin_url}/admin/tokens/orp_zq0000000002_abcd", headers=ADMIN
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["id"] == "zq0000000002"
    rows = {r["id"]: r for r in await list_json(proxy.config_path, "acme")}
    assert rows["zq0000000001"]["expires"] is None and rows["zq0000000002"]["expires"]
