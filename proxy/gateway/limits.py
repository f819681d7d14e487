"""Protecting districts: per-district concurrency cap and rate limits.

docs/http-api.md keys ``max_connections``, ``max_wait``, ``rate_limit`` (vendor and district) and
the status table: 429 (vendor over its ``rate_limit``, ``Retry-After``), 503 (district slots
busy for ``max_wait``, or district rate exhausted; ``Retry-After``). A district's circuit
breaker is ``proxy.gateway.circuit``'s.

Where each limit lives (THREAT_MODEL.md repeats this for operators):

* **Concurrency cap** (``max_connections``): a per-process FIFO queue (``FairSlots``) in front,
  so one process never holds or polls for more slots than it could use, and behind it a slot in
  the store (``Store.acquire_slot``, one holder id per request, a ttl renewed while the request
  runs as a guard against crashed processes). Every process using one store (``--workers N`` on
  one sqlite file, replicas on one redis) therefore shares one cap. A process waiting for a
  store slot polls with a growing backoff; across processes the order is first-come by poll,
  not strict FIFO.
* **Rate limits**: token buckets in the store (``Store.take_tokens``), shared the same way. A
  process remembers "that bucket is empty until t" and refuses locally until t, so a vendor
  hammering past its limit costs no store round-trip per refused request.

If the store cannot be reached, limits fail open to the per-process parts (each process still
caps a district at ``max_connections``; rate limits are not enforced) and a warning is logged at
most once a minute: a redis outage must not turn into an outage of every district.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config import DistrictConfig, Rate, VendorConfig
from proxy.errors import ServiceUnavailable, StoreUnavailable, TooManyRequests

if TYPE_CHECKING:
    from proxy.store.base import Store

log = logging.getLogger("oneroster_proxy")

#: Lifetime of a store slot without renewal: what a crashed process can hold a slot for.
SLOT_TTL = 30.0
#: Backoff bounds while polling the store for a free slot (seconds).
POLL_MIN = 0.005
POLL_MAX = 0.1
#: At most one "store unavailable" warning per this many seconds.
WARN_EVERY = 60.0


class FairSlots:
    """A FIFO counting semaphore with a bounded wait: the first to queue is the first served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, within: float) -> bool:
        """Take a slot within ``within`` seconds; False if none came free in time."""
        if self.held < self.limit and not self._waiters:
            self.held += 1
            return True
        if within <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                await waiter
        except TimeoutError:
            return self._gave_up(waiter)
        except BaseException:
            self._gave_up(waiter)
            raise
        return True

    def _gave_up(self, waiter: asyncio.Future[None]) -> bool:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        if waiter.done() and not waiter.cancelled():
            # The slot was handed over just as the wait ended: pass it on, or nobody gets it.
            self.release()
        return False

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the next in line; held unchanged
                return
        self.held -= 1


class _NoSlot:
    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_SLOT = _NoSlot()


class _Renewal:
    """The renewal of one held store slot: nothing for an exchange shorter than a third of
    the slot's ttl (nearly all of them), a renewing task for a long transfer. A timer costs
    far less per request than a task started and cancelled."""

    __slots__ = ("_args", "_limits", "_task", "_timer")

    def __init__(self, limits: Limits, store: Store, key: str, limit: int, holder: str) -> None:
        self._limits = limits
        self._args = (store, key, limit, holder)
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(limits.slot_ttl / 3, self._start)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._limits._renew(*self._args))

    async def stop(self) -> None:
        self._timer.cancel()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _HeldSlot:
    """One exchange's hold on a capped district: a place in this process's FIFO queue
    (``FairSlots``), then a slot in the store (shared by every process on it), renewed while a
    long transfer runs and given back after the answer. A plain class rather than a generator
    context manager: it is entered on every request to a capped district."""

    __slots__ = ("_district", "_held", "_limit", "_limits", "_local", "_renewal")

    def __init__(self, limits: Limits, district: DistrictConfig, limit: int) -> None:
        self._limits = limits
        self._district = district
        self._limit = limit
        self._local: FairSlots | None = None
        self._renewal: _Renewal | None = None
        self._held: tuple[Store, str, str] | None = None

    async def __aenter__(self) -> None:
        limits, district, limit = self._limits, self._district, self._limit
        deadline = limits._clock() + district.max_wait
        local = limits._local_slots(district.name, limit)
        if not await local.acquire(district.max_wait):
            raise limits._busy(district)
        self._local = local
        try:
            store = limits.store
            if store is None:
                return
            key = f"district:{district.name}"
            holder = f"{limits._holder_prefix}{next(limits._holders):x}"
            try:
                held = await limits._poll_slot(store, key, limit, holder, deadline)
            except asyncio.CancelledError:
                # The vendor went away mid-poll, perhaps just as the store granted the slot:
                # give it back now rather than leave it to the ttl.
                with contextlib.suppress(StoreUnavailable):
                    await store.release_slot(key, holder)
                raise
            if held is None:
                raise limits._busy(district)
            if held:  # False: the store is down, the local cap alone holds (fail open)
                self._renewal = _Renewal(limits, store, key, limit, holder)
                self._held = (store, key, holder)
        except BaseException:
            local.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._renewal is not None:
                await self._renewal.stop()
            if self._held is not None:
                # Given back after the answer, not before it: the vendor does not wait for the
                # store, and this process's own cap (FairSlots) is freed at once anyway.
                self._limits._release_later(*self._held)
        finally:
            if self._local is not None:
                self._local.release()


class Limits:
    """Every limit of one app; kept across config reloads (keyed by vendor/district name)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        slot_ttl: float = SLOT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.slot_ttl = slot_ttl
        self._clock = clock
        self._slots: dict[str, FairSlots] = {}
        # Bucket key -> clock time before which it is known to be empty.
        self._empty_until: dict[str, float] = {}
        self._warned_at = -math.inf
        # Store slots given back after their exchange, in order, by one task at a time.
        self._to_release: deque[tuple[Store, str, str]] = deque()
        self._releaser: asyncio.Task[None] | None = None
        # Store slot holder ids, unique across processes and replicas (a random prefix per
        # Limits) without a urandom read per request.
        self._holder_prefix = secrets.token_hex(8) + "-"
        self._holders = itertools.count(1)

    # -- rate limits ----------------------------------------------------------------------------

    async def vendor(self, vendor: VendorConfig) -> None:
        """Raise TooManyRequests (429) when ``vendor`` is over its ``rate_limit``, counted over
        all its tokens and JWTs (the bucket is keyed by vendor name)."""
        if vendor.rate_limit is None:
            return
        wait = await self._take(f"vendor:{vendor.name}", vendor.rate_limit)
        if wait > 0:
            raise TooManyRequests(f"vendor {vendor.name} is over its rate limit", retry_after=wait)

    async def _take(self, key: str, rate: Rate) -> float:
        """Take one token from bucket ``key``: 0.0, or the seconds until one is there."""
        now = self._clock()
        # The rate is part of the local key: a reload that changes the rate must not keep
        # refusing on what the old rate predicted.
        local = f"{key}|{rate.per_second}|{rate.burst}"
        until = self._empty_until.get(local)
        if until is not None:
            if now < until:
                return until - now
            del self._empty_until[local]
        if self.store is None:
            return 0.0
        try:
            wait = await self.store.take_tokens(key, rate.per_second, rate.burst)
        except StoreUnavailable as exc:
            self._warn(exc)
            return 0.0
        if wait > 0:
            self._empty_until[local] = self._clock() + wait
        return wait

    # -- concurrency cap ------------------------------------------------------------------------

    def district(self, district: DistrictConfig) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the district's ``max_connections`` slots for the whole exchange (head
        and body); wait for one in FIFO order up to ``max_wait``, then 503 + Retry-After.
        Without ``max_connections`` there is nothing to hold: one shared no-op context, so
        the common case costs no generator per request."""
        if district.max_connections is None:
            return _NO_SLOT
        return _HeldSlot(self, district, district.max_connections)

    def _local_slots(self, name: str, limit: int) -> FairSlots:
        slots = self._slots.get(name)
        if slots is None or slots.limit != limit:
            # A reload changed the limit: new requests queue on a new semaphore; those holding
            # the old one release it as they finish.
            slots = self._slots[name] = FairSlots(limit)
        return slots

    def _release_later(self, store: Store, key: str, holder: str) -> None:
        self._to_release.append((store, key, holder))
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(self._release_pending())

    async def _release_pending(self) -> None:
        while self._to_release:
            store, key, holder = self._to_release.popleft()
            try:
                await store.release_slot(key, holder)
            except StoreUnavailable as exc:
                self._warn(exc)  # the slot's ttl frees it
            except RuntimeError:
                return  # the store closed with the app: the ttl frees what is left

    async def close(self) -> None:
        """Give back the store slots still waiting to be released (before the store closes)."""
        if self._releaser is not None and not self._releaser.done():
            await self._releaser

    async def _poll_slot(
        self, store: Store, key: str, limit: int, holder: str, deadline: float
    ) -> bool | None:
        """True: a store slot is held. False: the store is down (fail open to the local cap).
        None: no slot came free before ``deadline``."""
        backoff = POLL_MIN
        while True:
            try:
                if await store.acquire_slot(key, limit, holder, self.slot_ttl):
                    return True
            except StoreUnavailable as exc:
                self._warn(exc)
                return False
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(POLL_MAX, backoff * 2)

    async def _renew(self, store: Store, key: str, limit: int, holder: str) -> None:
        """Keep a long transfer's slot alive (``acquire_slot`` renews a slot already held)."""
        while True:
            try:
                await store.acquire_slot(key, limit, holder, self.slot_ttl)
            except StoreUnavailable as exc:
                self._warn(exc)
            await asyncio.sleep(self.slot_ttl / 3)

    def _busy(self, district: DistrictConfig) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"district {district.name} is busy: its {district.max_connections} connection "
            f"slots stayed in use for {district.max_wait:g}s",
            retry_after=max(1.0, district.max_wait / 2),
        )

    # -- per attempt: district rate ---------------------------------------------------------------

    async def district_rate(self, district: DistrictConfig, deadline: float | None = None) -> None:
        """Called before each upstream attempt to a district with a ``rate_limit``: waits for a
        token if one comes before ``deadline`` (the request's upstream deadline) and within
        ``max_wait``, else 503 + Retry-After."""
        rate = district.rate_limit
        if rate is None:
            return
        key = f"district:{district.name}"
        limit = self._clock() + district.max_wait
        if deadline is not None:
            limit = min(limit, deadline)
        while True:
            wait = await self._take(key, rate)
            if wait <= 0:
                return
            if self._clock() + wait >= limit:
                raise ServiceUnavailable(
                    f"district {district.name} is over its rate limit", retry_after=wait
                )
            await asyncio.sleep(wait)

    # -- plumbing -------------------------------------------------------------------------------

    def _warn(self, exc: StoreUnavailable) -> None:
        now = self._clock()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "limits: store unavailable, enforcing per-process limits only: %s",
                exc.description,
            )
