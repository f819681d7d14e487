"""What the Redis store's role modules share: times as integer microseconds since the epoch
(exact as Lua numbers and as sorted-set scores, so scripts compare them without parsing), and
``RedisRole``, the base of each role's mixin (``RedisStore`` supplies what it declares), and
``audited``: a write script that keeps its audit event in the same script."""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

if TYPE_CHECKING:
    from proxy.store.base import AuditEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(value: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp can be off by one)."""
    if value.tzinfo is None:
        raise ValueError("the store keeps timezone-aware UTC datetimes, got a naive one")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(text: str | None) -> datetime | None:
    return None if text is None else _EPOCH + timedelta(microseconds=int(text))


def audit_entry(event: AuditEvent) -> str:
    """The JSON text of one ``orp:audit`` list entry."""
    return json.dumps(
        {
            "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "action": event.action,
            "interface": event.interface,
            "vendor": event.vendor,
            "token_id": event.token_id,
            "detail": event.detail,
        },
        separators=(",", ":"),
    )


_AUDIT_PRELUDE = """
-- The last KEY is the audit list; the last two ARGV its entry ('' for none) and its cap.
local nk, na = #KEYS, #ARGV
local audit_key, audit_entry, audit_cap = KEYS[nk], ARGV[na - 1], tonumber(ARGV[na])
local K, A = {}, {}
for i = 1, nk - 1 do K[i] = KEYS[i] end
for i = 1, na - 2 do A[i] = ARGV[i] end
local function audit()
  if audit_entry ~= '' then
    redis.call('RPUSH', audit_key, audit_entry)
    redis.call('LTRIM', audit_key, -audit_cap, -1)
  end
end
"""


def audited(body: str) -> str:
    """``body`` (a script written with KEYS and ARGV) taking an audit event too: it reads
    ``K`` and ``A`` (its own keys and arguments) and calls ``audit()`` after its checks and
    before its first write, so a refused change writes no event, and an event that cannot be
    written (the list of another type, memory full) stops the script before it changes
    anything: Redis does not roll a script back, so the order is what makes it all or
    nothing."""
    return _AUDIT_PRELUDE + re.sub(r"\bKEYS\b", "K", re.sub(r"\bARGV\b", "A", body))


class RedisRole:
    """The part of ``RedisStore`` a role's mixin uses: the client, key names, and the one
    place where redis-py's errors become ``StoreUnavailable``."""

    _client: aioredis.Redis
    _prefix: str
    _audit_max: int

    def _audited(
        self, keys: list[str], args: list[Any], event: AuditEvent | None
    ) -> tuple[list[str], list[Any]]:
        """``keys`` and ``args`` of an ``audited`` script, with ``event`` (or none)."""
        entry = "" if event is None else audit_entry(event)
        return [*keys, self._key("audit")], [*args, entry, self._audit_max]

    def _key(self, kind: str, name: str = "") -> str:  # supplied by RedisStore
        raise NotImplementedError

    def _unavailable(self, operation: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # supplied by RedisStore
