"""A store slot held as a lock across processes and replicas, renewed while it is held.

One holder at a time (``acquire_slot`` with one slot); a live holder renews it every third of
its ttl, so a holder that dies (a replica killed mid-task) loses it within ``ttl`` and the
next process takes over. Used by the background checks (docs/checklist.md) and the change
feed's walks (docs/http-api.md "Change feed").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from proxy.errors import ProxyError
from proxy.store.base import LimitStore


@contextlib.asynccontextmanager
async def held(store: LimitStore, key: str, holder: str, ttl: float) -> AsyncIterator[bool]:
    """Yields whether ``holder`` got the lock ``key``; held (and renewed) until the block
    ends, then given back. A store outage while renewing or giving back is the ttl's to end."""
    if not await store.acquire_slot(key, 1, holder, ttl):
        yield False
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            with contextlib.suppress(ProxyError):
                await store.acquire_slot(key, 1, holder, ttl)

    renewing = asyncio.get_running_loop().create_task(renew())
    try:
        yield True
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(ProxyError):
            await store.release_slot(key, holder)
