"""Fair share of a district's slots: a counting semaphore whose waiters go in round-robin by
vendor, then by connection, not in arrival order (docs/configuration.md "SIS courtesy").

While a slot is free and nobody waits, taking one is a counter increment (``try_take``): the
queue costs nothing on a district with room. Once every slot is busy, each freed slot goes to
the next vendor in turn (its longest-waiting connection's oldest request, connections of one
vendor taking turns too), so one vendor's bulk sync of thousands of pages queues behind
itself while another vendor's single lookup waits for one slot at most.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque

_Queue = deque[asyncio.Future[None]]


class FairSlots:
    """``limit`` slots; waiters served round-robin by vendor, then by connection."""

    __slots__ = ("_vendors", "held", "limit", "waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.waiting = 0
        # vendor -> connection -> its waiters, oldest first; the first vendor (and, within a
        # vendor, the first connection) is served next, then moves to the back.
        self._vendors: OrderedDict[str, OrderedDict[str, _Queue]] = OrderedDict()

    def try_take(self) -> bool:
        """Take a free slot without waiting (nobody is queued and one is free)."""
        if self.held < self.limit and not self.waiting:
            self.held += 1
            return True
        return False

    async def acquire(self, within: float, vendor: str = "", app: str = "") -> bool:
        """Take a slot within ``within`` seconds, queued as ``vendor``'s ``app``; False if
        none came free in time."""
        if self.try_take():
            return True
        if within <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        apps = self._vendors.get(vendor)
        if apps is None:
            apps = self._vendors[vendor] = OrderedDict()
        queue = apps.get(app)
        if queue is None:
            queue = apps[app] = deque()
        queue.append(waiter)
        self.waiting += 1
        try:
            async with asyncio.timeout(within):
                await waiter
        except TimeoutError:
            return self._gave_up(waiter, vendor, app)
        except BaseException:
            self._gave_up(waiter, vendor, app)
            raise
        return True

    def _gave_up(self, waiter: asyncio.Future[None], vendor: str, app: str) -> bool:
        apps = self._vendors.get(vendor)
        queue = apps.get(app) if apps is not None else None
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
                self.waiting -= 1
            self._drop_empty(vendor, app)
        if waiter.done() and not waiter.cancelled():
            # The slot was handed over just as the wait ended: pass it on, or nobody gets it.
            self.release()
        return False

    def _drop_empty(self, vendor: str, app: str) -> None:
        apps = self._vendors.get(vendor)
        if apps is None:
            return
        queue = apps.get(app)
        if queue is not None and not queue:
            del apps[app]
        if not apps:
            del self._vendors[vendor]

    def _next(self) -> asyncio.Future[None] | None:
        """The next waiter in turn, its vendor and connection moved to the back."""
        vendors = self._vendors
        while vendors:
            vendor, apps = next(iter(vendors.items()))
            app, queue = next(iter(apps.items()))
            waiter = queue.popleft()
            self.waiting -= 1
            if queue:
                apps.move_to_end(app)
            else:
                del apps[app]
            if apps:
                vendors.move_to_end(vendor)
            else:
                del vendors[vendor]
            if not waiter.done():
                return waiter
        return None

    def release(self) -> None:
        waiter = self._next() if self.waiting else None
        if waiter is not None:
            waiter.set_result(None)  # the slot passes to the next in turn; held unchanged
        else:
            self.held -= 1
