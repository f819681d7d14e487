"""Row helpers shared by the sqlite store's modules: times as fixed-width ISO-8601 UTC text
(SQL compares them as times), the write transaction, and the audit row a write adds inside it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from proxy.store.base import AuditEvent

T = TypeVar("T")
Op = Callable[[sqlite3.Connection, sqlite3.Connection], T]


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("the store keeps timezone-aware UTC datetimes, got a naive one")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else _iso(value)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: a read that later upgrades to a write can fail
    # with SQLITE_BUSY at once, without waiting out busy_timeout.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _audit(conn: sqlite3.Connection, event: AuditEvent | None) -> None:
    """Insert ``event`` (nothing for None); inside the caller's transaction, so the change
    and its event commit or roll back together."""
    if event is None:
        return
    conn.execute(
        "INSERT INTO audit (at, action, interface, vendor, token_id, detail) VALUES (?,?,?,?,?,?)",
        (
            _iso(event.at),
            event.action,
            event.interface,
            event.vendor,
            event.token_id,
            json.dumps(event.detail, separators=(",", ":")),
        ),
    )


class SqliteRole:
    """The part of ``SqliteStore`` a role's mixin uses: ``_run`` runs ``fn(conn, limits)`` on
    the store's one thread (``SqliteStore`` supplies it)."""

    async def _run(self, fn: Op[T]) -> T:
        raise NotImplementedError
