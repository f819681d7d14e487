"""What the Redis store's role modules share: times as integer microseconds since the epoch
(exact as Lua numbers and as sorted-set scores, so scripts compare them without parsing), and
``RedisRole``, the base of each role's mixin (``RedisStore`` supplies what it declares)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(value: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp can be off by one)."""
    if value.tzinfo is None:
        raise ValueError("the store keeps timezone-aware UTC datetimes, got a naive one")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(text: str | None) -> datetime | None:
    return None if text is None else _EPOCH + timedelta(microseconds=int(text))


class RedisRole:
    """The part of ``RedisStore`` a role's mixin uses: the client, key names, and the one
    place where redis-py's errors become ``StoreUnavailable``."""

    _client: aioredis.Redis
    _prefix: str

    def _key(self, kind: str, name: str = "") -> str:  # supplied by RedisStore
        raise NotImplementedError

    def _unavailable(self, operation: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # supplied by RedisStore
