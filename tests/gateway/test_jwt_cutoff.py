"""The JWT kill switch, seen from the gateway: a per-vendor "not before" in the store (docs/
"Token, gateway and CLI rules added after trying the product").

Two real proxies share a real ``redis-server``; a vendor's JWTs end on both, within
``cache_ttl``, when an operator runs ``tokens revoke --all VENDOR`` (a real CLI subprocess) or
its admin twin, or when the vendor's ``client_secret`` changes or is removed on one replica's
reload. A JWT obtained after the cut keeps working. With sqlite, a restart on a changed secret
cuts too, and the store never holds the secret.
"""

from __future__ import annotations

import copy
import sqlite3
from typing import Any

import pytest

from tests.cli.test_tokens import run_cli, status_of, wait_for_status
from tests.gateway.test_vendor_api import basic, token_request
from tests.redis_server import RedisServer, require_redis_server
from tests.support import (
    ACME_CLIENT_SECRET,
    ADMIN_TOKEN,
    JWT_KEY,
    SteppedClock,
    auth,
    base_config,
)

NEW_SECRET = "acme-client-secret-rotated-9876543210"
# cache_ttl is 1 s in these configs; polling allows for a loaded machine, not a timed check.
WITHIN = 10.0


@pytest.fixture
def redis_server():
    require_redis_server()
    with RedisServer() as server:
        yield server


async def replicas(sandbox: Any, start_proxy: Any, tmp_path: Any, url: str) -> tuple[Any, Any]:
    doc = base_config(tmp_path, sandbox)
    doc["store"] = {"url": url, "cache_ttl": "1s"}
    return await start_proxy(sandbox, doc), await start_proxy(sandbox, copy.deepcopy(doc))


async def new_jwt(proxy: Any, http: Any, secret: str = ACME_CLIENT_SECRET) -> str:
    status, data, _ = await token_request(
        proxy, http, {"grant_type": "client_credentials"}, basic("acme", secret)
    )
    assert status == 200, data
    return str(data["access_token"])


async def test_revoke_all_ends_jwts_on_every_replica(
    sandbox, start_proxy, tmp_path, http, redis_server
):
    a, b = await replicas(sandbox, start_proxy, tmp_path, redis_server.url)
    old = await new_jwt(a, http)
    for replica in (a, b):
        assert await status_of(http, replica.app_url("v1p1/orgs"), old) == 200

    code, out, err = await run_cli(
        "tokens", "revoke", "--all", "acme", "--config", str(a.config_path)
    )
    assert code == 0, err
    for replica in (a, b):
        await wait_for_status(http, replica.app_url("v1p1/orgs"), old, 401, WITHIN)
    assert "JWT" in out  # the operator is told what the command ended

    # A JWT obtained after the cut works everywhere; the other vendor was never touched.
    fresh = await new_jwt(b, http)
    for replica in (a, b):
        assert await status_of(http, replica.app_url("v1p1/orgs"), fresh) == 200

    # The admin twin: the replica that took the call refuses at once, the other within TTL.
    async with http.delete(
        f"{a.admin_url}/admin/vendors/acme/tokens", headers=auth(ADMIN_TOKEN)
    ) as resp:
        assert resp.status == 200, await resp.text()
    assert await status_of(http, a.app_url("v1p1/orgs"), fresh) == 401
    await wait_for_status(http, b.app_url("v1p1/orgs"), fresh, 401, WITHIN)
    async with http.get(a.app_url("v1p1/orgs"), headers=auth(fresh)) as resp:
        assert resp.status == 401
        assert "revoked" in (await resp.json())["imsx_description"]


async def test_changed_or_removed_client_secret_ends_jwts_on_every_replica(
    sandbox, start_proxy, tmp_path, http, redis_server
):
    a, b = await replicas(sandbox, start_proxy, tmp_path, redis_server.url)
    old = await new_jwt(a, http)
    assert await status_of(http, b.app_url("v1p1/orgs"), old) == 200

    # Only replica a reloads the new secret; b learns of the cut from the store.
    doc = copy.deepcopy(a.doc)
    doc["vendors"]["acme"]["client_secret"] = NEW_SECRET
    a.write(doc)
    async with http.post(f"{a.admin_url}/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 200, await resp.text()
    assert await status_of(http, a.app_url("v1p1/orgs"), old) == 401
    await wait_for_status(http, b.app_url("v1p1/orgs"), old, 401, WITHIN)
    fresh = await new_jwt(a, http, NEW_SECRET)
    for replica in (a, b):
        assert await status_of(http, replica.app_url("v1p1/orgs"), fresh) == 200

    # Reloading the same secret again (b catching up) cuts nothing more.
    b.write(doc)
    async with http.post(f"{b.admin_url}/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 200, await resp.text()
    for replica in (a, b):
        assert await status_of(http, replica.app_url("v1p1/orgs"), fresh) == 200

    # Removing the secret on one replica ends the JWTs on the other, which still has it.
    del doc["vendors"]["acme"]["client_secret"]
    a.write(doc)
    async with http.post(f"{a.admin_url}/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 200, await resp.text()
    await wait_for_status(http, b.app_url("v1p1/orgs"), fresh, 401, WITHIN)
    # Opaque tokens are not JWTs: they go on.
    assert await status_of(http, b.app_url("v1p1/orgs"), await b.token()) == 200


async def test_restart_on_a_changed_secret_ends_jwts_and_the_store_holds_no_secret(
    sandbox, start_proxy, tmp_path, http
):
    first = await start_proxy(sandbox)
    old = await new_jwt(first, http)
    unchanged = copy.deepcopy(first.doc)
    await first.stop()

    # The same secret again: a restart alone ends nothing.
    second = await start_proxy(sandbox, unchanged)
    assert await status_of(http, second.app_url("v1p1/orgs"), old) == 200
    await second.stop()

    changed = copy.deepcopy(unchanged)
    changed["vendors"]["acme"]["client_secret"] = NEW_SECRET
    third = await start_proxy(sandbox, changed)
    assert await status_of(http, third.app_url("v1p1/orgs"), old) == 401
    assert (
        await status_of(http, third.app_url("v1p1/orgs"), await new_jwt(third, http, NEW_SECRET))
        == 200
    )

    dump = "\n".join(sqlite3.connect(tmp_path / "store.db").iterdump())
    assert "vendor_auth" in dump
    for secret in (ACME_CLIENT_SECRET, NEW_SECRET):
        assert secret not in dump


async def test_store_outage_keeps_the_last_cut_in_force(
    sandbox, start_proxy, tmp_path, http, redis_server
):
    doc = base_config(tmp_path, sandbox)
    doc["store"] = {"url": redis_server.url, "cache_ttl": "1s"}
    proxy = await start_proxy(sandbox, doc)
    clock = proxy.services.authenticator.clock = SteppedClock()
    old = await new_jwt(proxy, http)
    async with http.delete(
        f"{proxy.admin_url}/admin/vendors/acme/tokens", headers=auth(ADMIN_TOKEN)
    ) as resp:
        assert resp.status == 200
    fresh = await new_jwt(proxy, http)
    assert await status_of(http, proxy.app_url("v1p1/orgs"), fresh) == 200

    redis_server.stop()
    clock.advance(1.2)  # past cache_ttl: the cut can no longer be read
    # JWTs verify without the store; the last cut read stays in force, both ways.
    assert await status_of(http, proxy.app_url("v1p1/orgs"), fresh) == 200
    assert await status_of(http, proxy.app_url("v1p1/orgs"), old) == 401


async def test_a_copy_of_the_store_gives_nothing_to_test_a_guess_against(
    sandbox, start_proxy, tmp_path, http
):
    """The stored fingerprint is an HMAC keyed from ``[server] jwt_keys``, which the store
    does not hold: even the right secret, guessed, cannot be confirmed from a copy of the
    store. A fingerprint in the earlier PBKDF2 form (an upgraded store) is taken as the same
    secret, so the upgrade ends no JWT, and is replaced."""
    import base64
    import hashlib

    from proxy.gateway.jwt_cutoff import CHANGED, SAME, compare

    def stored() -> str:
        with sqlite3.connect(tmp_path / "store.db") as db:
            row = db.execute("SELECT secret_fingerprint FROM vendor_auth WHERE vendor = 'acme'")
            return str(row.fetchone()[0])

    first = await start_proxy(sandbox)
    old = await new_jwt(first, http)
    doc = copy.deepcopy(first.doc)
    await first.stop()
    fingerprint = stored()
    assert fingerprint.startswith("hmac-sha256$") and ACME_CLIENT_SECRET not in fingerprint
    assert compare(fingerprint, ACME_CLIENT_SECRET, [JWT_KEY]) == SAME
    for guessed_key in ("", "a-guessed-jwt-key-0123456789abcdef0123"):
        assert compare(fingerprint, ACME_CLIENT_SECRET, [guessed_key]) == CHANGED

    salt = b"0123456789abcdef"
    legacy = hashlib.pbkdf2_hmac("sha256", ACME_CLIENT_SECRET.encode(), salt, 50_000)

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute(
            "UPDATE vendor_auth SET secret_fingerprint = ? WHERE vendor = 'acme'",
            (f"pbkdf2-sha256$50000${b64(salt)}${b64(legacy)}",),
        )
    second = await start_proxy(sandbox, doc)
    assert await status_of(http, second.app_url("v1p1/orgs"), old) == 200
    assert stored() == fingerprint  # HMAC: the same secret, the same key, the same text
