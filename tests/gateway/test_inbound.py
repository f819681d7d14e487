"""proxy.gateway.inbound: bearer tokens checked against the store, with a shared, cancellation-safe
token cache (docs/http-api.md, 401 for a missing, unknown, expired or revoked token).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from proxy import tokens
from proxy.errors import Unauthorized
from proxy.gateway.inbound import Authenticator
from proxy.store.sqlite import SqliteStore


class SlowStore(SqliteStore):
    """A real sqlite store whose token look-ups take a while (a busy store)."""

    delay = 0.3

    async def get_token(self, token_id: str) -> Any:
        await asyncio.sleep(self.delay)
        return await super().get_token(token_id)


async def test_waiters_survive_the_cancelled_leader_of_a_shared_lookup(tmp_path: Path):
    """Concurrent misses share one store look-up; when the request that started it is
    cancelled (its vendor hung up: the gateway runs with handler_cancellation), the others
    must still get an answer instead of waiting forever on a future nobody resolves."""
    store = SlowStore(str(tmp_path / "store.db"))
    await store.open()
    try:
        issued = await tokens.issue(store, "acme", ttl=None, interface="cli")
        auth = Authenticator(store, 5.0)
        vendors: dict[str, Any] = {"acme": object()}
        header = f"Bearer {issued.token}"
        leader = asyncio.ensure_future(auth.authenticate(header, vendors, ()))
        await asyncio.sleep(0.05)  # the leader is inside store.get_token
        waiter = asyncio.ensure_future(auth.authenticate(header, vendors, ()))
        await asyncio.sleep(0.05)  # the waiter awaits the leader's shared look-up
        leader.cancel()
        principal = await asyncio.wait_for(waiter, 3)
        assert principal.vendor == "acme"
        assert leader.cancelled()
    finally:
        await store.close()


class CountingStore(SqliteStore):
    """A real sqlite store that counts (and slows) its reads of vendors' JWT cuts."""

    reads = 0

    async def get_vendor_auth(self, vendor: str) -> Any:
        self.reads += 1
        await asyncio.sleep(0.05)
        return await super().get_vendor_auth(vendor)


async def test_a_burst_of_jwts_reads_the_vendors_cut_once(tmp_path: Path):
    """Concurrent JWT requests meeting a lapsed cut entry make one store read, and a cut read
    then refuses the vendor's older JWTs while a newer one passes."""
    from datetime import UTC, datetime, timedelta

    from proxy.gateway.inbound import encode_jwt

    key = "jwt-key-for-tests-0123456789abcdef0123"
    store = CountingStore(str(tmp_path / "store.db"))
    await store.open()
    try:
        vendors: dict[str, Any] = {"acme": type("V", (), {"client_secret": "x" * 16})()}
        auth = Authenticator(store, 5.0)
        now = datetime.now(UTC)
        old = encode_jwt("acme", frozenset(), key, ttl=600, now=now - timedelta(seconds=100))
        header = f"Bearer {old}"
        got = await asyncio.gather(*(auth.authenticate(header, vendors, (key,)) for _ in range(20)))
        assert {p.vendor for p in got} == {"acme"} and store.reads == 1

        await store.set_jwt_not_before("acme", now - timedelta(seconds=50))
        auth.forget_cutoff("acme")
        fresh = encode_jwt("acme", frozenset(), key, ttl=600)
        assert (await auth.authenticate(f"Bearer {fresh}", vendors, (key,))).vendor == "acme"
        try:
            await auth.authenticate(header, vendors, (key,))
        except Unauthorized as exc:
            assert exc.description == "token revoked" and exc.vendor == "acme"
        else:
            raise AssertionError("a JWT issued before the cut was accepted")
        assert store.reads == 2
    finally:
        await store.close()
