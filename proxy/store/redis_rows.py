"""Times in the Redis store: integer microseconds since the epoch, exact as Lua numbers and as
sorted-set scores, so scripts compare them without parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(value: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp can be off by one)."""
    if value.tzinfo is None:
        raise ValueError("the store keeps timezone-aware UTC datetimes, got a naive one")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(text: str | None) -> datetime | None:
    return None if text is None else _EPOCH + timedelta(microseconds=int(text))
