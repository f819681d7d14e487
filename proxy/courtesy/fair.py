"""Fair share of a district's slots: a counting semaphore whose waiters go in round-robin by
vendor, then by connection, not in arrival order (docs/configuration.md "SIS courtesy").

While a slot is free and nobody waits, taking one is a counter increment and a note of whose
turn it was (``try_take``): the queue costs nothing on a district with room. Once every slot is
busy, each freed slot goes to the waiting vendor whose last turn is oldest (then, within it, to
its connection whose last turn is oldest; the oldest request of that connection), so one
vendor's bulk sync of thousands of pages queues behind itself while another vendor's single
lookup is let in at the next freed slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterable

_Queue = deque[asyncio.Future[None]]


class FairSlots:
    """``limit`` slots; waiters served round-robin by vendor, then by connection."""

    __slots__ = ("_app_turn", "_turn", "_vendor_turn", "_vendors", "held", "limit", "waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.waiting = 0
        # vendor -> connection -> its waiters, oldest first.
        self._vendors: dict[str, dict[str, _Queue]] = {}
        # The turn (a counter) at which each vendor and each connection last got a slot: the
        # next slot goes to the waiting vendor served longest ago (never: first), and within it
        # to its waiting connection served longest ago. AppIds are unique across vendors.
        self._turn = 0
        self._vendor_turn: dict[str, int] = {}
        self._app_turn: dict[str, int] = {}

    def try_take(self, vendor: str = "", app: str = "") -> bool:
        """Take a free slot without waiting (nobody is queued and one is free)."""
        if self.held < self.limit and not self.waiting:
            self.held += 1
            self._turn = turn = self._turn + 1
            self._vendor_turn[vendor] = turn
            self._app_turn[app] = turn
            return True
        return False

    async def acquire(self, within: float, vendor: str = "", app: str = "") -> bool:
        """Take a slot within ``within`` seconds, queued as ``vendor``'s ``app``; False if
        none came free in time."""
        if self.try_take(vendor, app):
            return True
        if within <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        apps = self._vendors.get(vendor)
        if apps is None:
            apps = self._vendors[vendor] = {}
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
        """The next waiter in turn: of the waiting vendor served longest ago, its waiting
        connection served longest ago, the oldest request (ties: the first to queue)."""
        while self._vendors:
            vendor = _longest_ago(self._vendors, self._vendor_turn)
            apps = self._vendors[vendor]
            app = _longest_ago(apps, self._app_turn)
            waiter = apps[app].popleft()
            self.waiting -= 1
            self._drop_empty(vendor, app)
            if not waiter.done():
                self._turn = turn = self._turn + 1
                self._vendor_turn[vendor] = turn
                self._app_turn[app] = turn
                return waiter
        return None

    def release(self) -> None:
        waiter = self._next() if self.waiting else None
        if waiter is not None:
            waiter.set_result(None)  # the slot passes to the next in turn; held unchanged
        else:
            self.held -= 1


def _longest_ago(waiting: Iterable[str], turns: dict[str, int]) -> str:
    """The key of ``waiting`` whose last turn is oldest (never served: -1; ties: first)."""
    best, best_turn = "", math.inf
    for key in waiting:
        turn = turns.get(key, -1)
        if turn < best_turn:
            best, best_turn = key, turn
    return best
