"""Limiter state in the sqlite store (``LimitStore`` of ``base.py``): token buckets and
semaphore slots in the ``buckets`` and ``slots`` tables, times from this host's clock (a sqlite
file is only ever shared on one host). Mixed into ``SqliteStore``, which supplies ``_run`` and
``_inline`` (slot writes on the loop's thread when the file is free).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from proxy.store.base import (
    validate_bucket,
    validate_slot,
)
from proxy.store.sqlite_rows import SqliteRole, _write

T = TypeVar("T")

# Float error in the refill arithmetic must not turn "exactly enough" into a tiny wait.
_EPSILON = 1e-9


class SqliteLimits(SqliteRole):
    """The ``LimitStore`` methods of ``SqliteStore``."""

    def _inline(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        raise NotImplementedError  # supplied by SqliteStore

    # -- limiter state ------------------------------------------------------------------------

    async def take_tokens(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """Token bucket in the ``buckets`` table, one row per key updated in one transaction,
        so every process using this file (``serve --workers N``) shares it. Time is this
        host's clock: a sqlite file is only ever shared on one host."""
        validate_bucket(rate, burst, cost)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> float:
            with _write(limits):
                now = time.time()  # read under the write lock: callers are then in time order
                row = limits.execute(
                    "SELECT tokens, updated FROM buckets WHERE key = ?", (key,)
                ).fetchone()
                tokens, updated = (burst, now) if row is None else row
                # max(0, ...): a clock stepped backwards must not drain the bucket.
                tokens = min(burst, tokens + max(0.0, now - updated) * rate)
                if tokens + _EPSILON < cost:
                    return (cost - tokens) / rate
                limits.execute(
                    "INSERT INTO buckets (key, tokens, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, "
                    "updated = excluded.updated",
                    (key, max(0.0, tokens - cost), now),
                )
                return 0.0

        return await self._run(op)

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl: float) -> bool:
        validate_slot(limit, ttl)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> bool:
            with _write(limits):
                now = time.time()
                limits.execute("DELETE FROM slots WHERE key = ? AND expires <= ?", (key, now))
                renewed = limits.execute(
                    "UPDATE slots SET expires = ? WHERE key = ? AND holder = ?",
                    (now + ttl, key, holder),
                ).rowcount
                if renewed:
                    return True
                (held,) = limits.execute(
                    "SELECT count(*) FROM slots WHERE key = ?", (key,)
                ).fetchone()
                if held >= limit:
                    return False
                limits.execute(
                    "INSERT INTO slots (key, holder, expires) VALUES (?, ?, ?)",
                    (key, holder, now + ttl),
                )
                return True

        def take_free(fast: sqlite3.Connection) -> bool:
            # Nearly every call is a new holder below the limit: one statement (atomic on its
            # own) inserts it if it holds nothing yet and fewer than ``limit`` unexpired slots
            # are held. No row: a renewal, or at the limit; ``op`` then decides (and deletes
            # expired rows, which only a process that died holding a slot leaves behind).
            now = time.time()
            inserted = fast.execute(
                "INSERT INTO slots (key, holder, expires) SELECT ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM slots WHERE key = ? AND holder = ?) "
                "AND (SELECT count(*) FROM slots WHERE key = ? AND expires > ?) < ?",
                (key, holder, now + ttl, key, holder, key, now, limit),
            ).rowcount
            return bool(inserted) or op(fast, fast)

        done, taken = self._inline(take_free)
        if done:
            return bool(taken)
        return await self._run(op)

    async def release_slot(self, key: str, holder: str) -> None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            limits.execute("DELETE FROM slots WHERE key = ? AND holder = ?", (key, holder))

        done, _ = self._inline(lambda fast: op(fast, fast))
        if not done:
            await self._run(op)
