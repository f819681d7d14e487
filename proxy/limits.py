"""Protecting districts: per-district concurrency cap, rate limits, circuit breaking.

SPEC.md config keys ``max_connections``, ``max_wait``, ``rate_limit`` (vendor and district);
statuses 429 (vendor over its rate, ``Retry-After``) and 503 (district slots busy for
``max_wait``, or district rate exhausted, ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .config import DistrictConfig, VendorConfig
from .errors import ServiceUnavailable


class Limits:
    """Per-process limits; one per app, kept across config reloads."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[int, asyncio.Semaphore]] = {}

    async def vendor(self, vendor: VendorConfig) -> None:
        """Raise TooManyRequests when ``vendor`` is over its ``rate_limit``."""

    @contextlib.asynccontextmanager
    async def district(self, district: DistrictConfig) -> AsyncIterator[None]:
        """Hold one of the district's ``max_connections`` slots for the whole exchange."""
        if district.max_connections is None:
            yield
            return
        current = self._slots.get(district.name)
        if current is None or current[0] != district.max_connections:
            current = (district.max_connections, asyncio.Semaphore(district.max_connections))
            self._slots[district.name] = current
        semaphore = current[1]
        try:
            await asyncio.wait_for(semaphore.acquire(), district.max_wait)
        except TimeoutError as exc:
            raise ServiceUnavailable(
                "the district is busy: all of its connection slots stayed in use",
                retry_after=max(1.0, district.max_wait / 2),
            ) from exc
        try:
            yield
        finally:
            semaphore.release()

    async def before_send(self, district: DistrictConfig) -> None:
        """Called before each upstream attempt (district rate limit, open circuit)."""

    def record_failure(self, district: DistrictConfig) -> None:
        """A connect failure or timeout (circuit breaker input)."""

    def record_success(self, district: DistrictConfig) -> None:
        """A response head arrived."""

    def circuit_state(self, district: DistrictConfig) -> str:
        """``closed``, ``open`` or ``half-open`` (shown in ``/admin/connections``)."""
        return "closed"
