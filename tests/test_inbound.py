"""proxy.inbound: bearer tokens checked against the store, with a shared, cancellation-safe
token cache (SPEC.md "Gateway listener", 401 for a missing, unknown, expired or revoked token).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from proxy import tokens
from proxy.inbound import Authenticator
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
