"""Protecting districts: per-district concurrency cap and rate limits.

docs/http-api.md keys ``max_connections``, ``max_wait``, ``rate_limit`` (vendor and district) and
the status table: 429 (vendor over its ``rate_limit``, ``Retry-After``), 503 (district slots
busy for ``max_wait``, or district rate exhausted; ``Retry-After``). A district's circuit
breaker is ``proxy.gateway.circuit``'s.

Where each limit lives (THREAT_MODEL.md repeats this for operators):

* **Concurrency cap** (``max_connections``, or inside one of the district's ``windows`` that
  window's): a per-process queue in front (``proxy.courtesy.fair.FairSlots``: waiters go
  round-robin by vendor, then by connection), so one process never holds or polls for more
  slots than it could use, and behind it a slot in
  the store (``Store.acquire_slot``, one holder id per request, a ttl renewed while the request
  runs as a guard against crashed processes). Every process using one store (``--workers N`` on
  one sqlite file, replicas on one redis) therefore shares one cap. A process waiting for a
  store slot polls with a growing backoff, and only while it holds the district's turn in
  the store (``<key>:next``, one holder across every process): a slot one process frees goes
  to the process that has waited for it, not back to the freeing process's own queue. Fair
  share is exact within a process; across processes they take turns (docs/configuration.md).
* **Pauses** (``pauses``): every request for a paused district is refused with 503 before it
  takes a slot (``Limits.not_paused``).
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
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from proxy.config import DistrictConfig, Rate, VendorConfig
from proxy.courtesy.fair import FairSlots
from proxy.courtesy.schedule import Pause, cap_at, pause_end, paused
from proxy.errors import ServiceUnavailable, StoreUnavailable, TooManyRequests

if TYPE_CHECKING:
    from proxy.store.base import Store

log = logging.getLogger("oneroster_proxy")

#: Lifetime of a store slot without renewal: what a crashed process can hold a slot for.
SLOT_TTL = 30.0
#: Backoff bounds while polling the store for a free slot (seconds).
POLL_MIN = 0.005
POLL_MAX = 0.1
#: Lifetime of a district's turn (``<key>:next``) without renewal; renewed on every poll.
TURN_TTL = 1.0
#: At most one "store unavailable" warning per this many seconds.
WARN_EVERY = 60.0
#: Failed ``POST /oauth/token`` attempts per client address: 10 at once, then one every 6
#: seconds (10 a minute); more get 429 until the bucket has room again.
TOKEN_FAILURES_PER_ADDRESS = Rate(10, 60.0)
#: ... and per client id (a vendor the config knows), whatever the addresses: 60 a minute, so
#: guessers spread over many addresses run out too, and a vendor's own token fetches are held
#: up only by a flood of guesses, never by a few.
TOKEN_FAILURES_PER_CLIENT = Rate(60, 60.0)
#: Empty buckets remembered locally at most (their keys may be a client's address).
MAX_REMEMBERED = 10_000


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
    """One exchange's hold on a capped district: a place in this process's fair queue
    (``FairSlots``), then a slot in the store (shared by every process on it), renewed while a
    long transfer runs and given back after the answer. A plain class rather than a generator
    context manager: it is entered on every request to a capped district."""

    __slots__ = ("_app", "_district", "_held", "_limit", "_limits", "_local", "_renewal", "_vendor")

    def __init__(
        self, limits: Limits, district: DistrictConfig, limit: int, vendor: str, app: str
    ) -> None:
        self._limits = limits
        self._district = district
        self._limit = limit
        self._vendor = vendor
        self._app = app
        self._local: FairSlots | None = None
        self._renewal: _Renewal | None = None
        self._held: tuple[Store, str, str] | None = None

    async def __aenter__(self) -> None:
        limits, district, limit = self._limits, self._district, self._limit
        local = limits._local_slots(district.name, limit)
        waited_since: float | None = None
        if not local.try_take(self._vendor, self._app):
            # Every slot of this process is busy: the fair queue, timed for
            # district_wait_seconds (a free slot costs neither).
            waited_since = limits._clock()
            if not await local.acquire(district.max_wait, self._vendor, self._app):
                limits._waited(district.name, waited_since)
                raise limits._busy(district, limit)
        self._local = local
        try:
            store = limits.store
            if store is None:
                if waited_since is not None:
                    limits._waited(district.name, waited_since)
                return
            key = f"district:{district.name}"
            holder = f"{limits._holder_prefix}{next(limits._holders):x}"
            start = waited_since if waited_since is not None else limits._clock()
            try:
                held = await limits._poll_slot(
                    store, key, limit, holder, start + district.max_wait, waited_since is not None
                )
            except asyncio.CancelledError:
                # The vendor went away mid-poll, perhaps just as the store granted the slot:
                # give it back now rather than leave it to the ttl.
                with contextlib.suppress(StoreUnavailable):
                    await store.release_slot(key, holder)
                raise
            if held is None:
                limits._waited(district.name, start)
                raise limits._busy(district, limit)
            if held != _FIRST_TRY or waited_since is not None:
                limits._waited(district.name, start)
            if held != _STORE_DOWN:  # when down, the local cap alone holds (fail open)
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


#: What polling the store for a slot came to: held at the first try, held after polling, the
#: store down (fail open to the local cap); None: no slot before the deadline.
_FIRST_TRY, _AFTER_POLL, _STORE_DOWN = "first try", "after polling", "store down"


class Limits:
    """Every limit of one app; kept across config reloads (keyed by vendor/district name)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        slot_ttl: float = SLOT_TTL,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        wait_seconds: Any = None,
    ) -> None:
        self.store = store
        self.slot_ttl = slot_ttl
        self._clock = clock
        # The wall clock windows and pauses are read against (tests inject one); the
        # district_wait_seconds histogram (set by create_app), observed only after a wait.
        self.wall = wall
        self.wait_seconds = wait_seconds
        # district name -> (district, minute, cap, pause): what its windows and pauses say
        # in that minute (windows have minute resolution, pauses whole days).
        self._courtesy: dict[str, tuple[DistrictConfig, int, int | None, Pause | None]] = {}
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

    # -- failed client credentials (POST /oauth/token) --------------------------------------------

    def failures_refused(self, buckets: Iterable[tuple[str, Rate]]) -> float:
        """Seconds until every one of the failure ``buckets`` takes an attempt again, as this
        process knows it (no store round-trip: a good request pays nothing), or 0.0."""
        return max((self._known_empty(key, rate) for key, rate in buckets), default=0.0)

    async def failure(self, buckets: Iterable[tuple[str, Rate]]) -> float:
        """Count one failed attempt in each of ``buckets`` (shared through the store); the
        seconds until the emptiest takes one again, or 0.0 while all had room."""
        waits = [await self._take(key, rate) for key, rate in buckets]
        return max(waits, default=0.0)

    def _known_empty(self, key: str, rate: Rate) -> float:
        local = f"{key}|{rate.per_second}|{rate.burst}"
        until = self._empty_until.get(local)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._empty_until[local]
            return 0.0
        return left

    async def _take(self, key: str, rate: Rate) -> float:
        """Take one token from bucket ``key``: 0.0, or the seconds until one is there."""
        # The rate is part of the local key: a reload that changes the rate must not keep
        # refusing on what the old rate predicted.
        known = self._known_empty(key, rate)
        if known > 0:
            return known
        if self.store is None:
            return 0.0
        try:
            wait = await self.store.take_tokens(key, rate.per_second, rate.burst)
        except StoreUnavailable as exc:
            self._warn(exc)
            return 0.0
        if wait > 0:
            if len(self._empty_until) >= MAX_REMEMBERED:
                self._empty_until.clear()  # keys a client chooses (its address): bounded
            self._empty_until[f"{key}|{rate.per_second}|{rate.burst}"] = self._clock() + wait
        return wait

    # -- concurrency cap ------------------------------------------------------------------------

    def district(
        self, district: DistrictConfig, vendor: str = "", app: str = ""
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the district's slots (its ``max_connections``, or its window's) for the
        whole exchange (head and body); while all are busy, wait in turn (round-robin by
        ``vendor``, then by ``app``) up to ``max_wait``, then 503 + Retry-After. Uncapped now:
        one shared no-op context, so the common case costs no generator per request."""
        limit = self.cap(district) if district.windows else district.max_connections
        if limit is None:
            return _NO_SLOT
        return _HeldSlot(self, district, limit, vendor, app)

    def cap(self, district: DistrictConfig) -> int | None:
        """The district's cap now (``proxy.courtesy.cap_at``), read once a minute."""
        return self._now(district, self.wall())[0]

    def not_paused(self, district: DistrictConfig) -> None:
        """503 while ``district`` is in one of its ``pauses``: ``Retry-After`` to the pause's
        end, the description naming its reason and last day. Read once a minute, like the cap
        (pauses are whole days, windows whole minutes)."""
        now = self.wall()
        pause = self._now(district, now)[1]
        if pause is None:
            return
        end = pause_end(district, pause)
        raise ServiceUnavailable(
            f"district {district.name} has paused syncs ({pause.reason}) until "
            f"{pause.end.isoformat()} inclusive; requests resume on "
            f"{end.date().isoformat()} ({district.timezone})",
            retry_after=max(1.0, end.timestamp() - now),
        )

    def _now(self, district: DistrictConfig, now: float) -> tuple[int | None, Pause | None]:
        """The district's cap and pause in the minute of ``now`` (wall clock seconds)."""
        minute = int(now // 60)
        known = self._courtesy.get(district.name)
        if known is not None and known[0] is district and known[1] == minute:
            return known[2], known[3]
        moment = datetime.fromtimestamp(minute * 60, UTC)
        cap, pause = cap_at(district, moment), paused(district, moment)
        self._courtesy[district.name] = (district, minute, cap, pause)
        return cap, pause

    def _waited(self, district: str, since: float) -> None:
        if self.wait_seconds is not None:
            self.wait_seconds.labels(district).observe(max(0.0, self._clock() - since))

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
        self, store: Store, key: str, limit: int, holder: str, deadline: float, waited: bool
    ) -> str | None:
        """``_FIRST_TRY`` or ``_AFTER_POLL``: a store slot is held. ``_STORE_DOWN``: fail open
        to the local cap. None: no slot came free before ``deadline``.

        A request that finds every slot busy (or that ``waited`` in this process's queue) takes
        the district's turn first (``<key>:next``, one holder across every process), and only
        the holder of the turn polls for the slot: a slot one process frees goes to the process
        that has waited longest for it, not back to the freeing process's own queue, which
        would otherwise win every time (its next request asks at once, others after a backoff).
        """
        backoff = POLL_MIN
        turn = f"{key}:next"
        in_turn = False
        try:
            if not waited and await store.acquire_slot(key, limit, holder, self.slot_ttl):
                return _FIRST_TRY
            while True:
                # Taken, or renewed while held (its ttl outlives the longest backoff tenfold).
                in_turn = await store.acquire_slot(turn, 1, holder, TURN_TTL)
                if in_turn and await store.acquire_slot(key, limit, holder, self.slot_ttl):
                    return _AFTER_POLL
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                await asyncio.sleep(min(backoff, remaining))
                backoff = min(POLL_MAX, backoff * 2)
        except StoreUnavailable as exc:
            self._warn(exc)
            return _STORE_DOWN
        finally:
            if in_turn:
                self._release_later(store, turn, holder)

    async def _renew(self, store: Store, key: str, limit: int, holder: str) -> None:
        """Keep a long transfer's slot alive (``acquire_slot`` renews a slot already held)."""
        while True:
            try:
                await store.acquire_slot(key, limit, holder, self.slot_ttl)
            except StoreUnavailable as exc:
                self._warn(exc)
            await asyncio.sleep(self.slot_ttl / 3)

    def _busy(self, district: DistrictConfig, limit: int) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"district {district.name} is busy: its {limit} connection "
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
