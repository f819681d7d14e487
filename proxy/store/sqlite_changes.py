"""The change feed in the sqlite store (``ChangeStore`` of ``base.py``).

docs/http-api.md "Change feed". Tables: ``change_hashes`` (the last complete walk: appId,
collection, sourcedId, keyed hash), ``change_stage`` and ``change_stage_log`` (a walk's hashes
and changes until it is published or dropped), ``changes`` (the feed, by seq), ``change_seq``
(the last seq and the trimmed floor) and ``change_walks`` (the newest walk per connection).
Nothing of a record but its sourcedId and hash is ever written. ``publish_walk`` is one
``BEGIN IMMEDIATE`` transaction. Mixed into ``SqliteStore``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from proxy.errors import NotFound
from proxy.store.base import ChangeRecord, WalkRecord
from proxy.store.sqlite_rows import SqliteRole, _iso, _iso_or_none, _time, _write

#: One batch of ``missing_ids``.
MISSING_BATCH = 1000

#: Schema 6 of the sqlite store: applied by ``SqliteStore``'s migrations.
TABLES: tuple[str, ...] = (
    # Store connections carry the change feed's keys too.
    "ALTER TABLE connections ADD COLUMN changes INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE connections ADD COLUMN changes_at TEXT NOT NULL DEFAULT '02:00'",
    "ALTER TABLE connections ADD COLUMN max_deletions TEXT NOT NULL DEFAULT '10%'",
    """CREATE TABLE change_hashes (
        app_id     TEXT NOT NULL,
        collection TEXT NOT NULL,
        sourced_id TEXT NOT NULL,
        hash       TEXT NOT NULL,
        PRIMARY KEY (app_id, collection, sourced_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE change_stage (
        app_id     TEXT NOT NULL,
        walk_id    TEXT NOT NULL,
        collection TEXT NOT NULL,
        sourced_id TEXT NOT NULL,
        hash       TEXT NOT NULL,
        PRIMARY KEY (app_id, walk_id, collection, sourced_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE change_stage_log (
        app_id     TEXT NOT NULL,
        walk_id    TEXT NOT NULL,
        n          INTEGER NOT NULL,
        collection TEXT NOT NULL,
        sourced_id TEXT NOT NULL,
        change     TEXT NOT NULL,
        PRIMARY KEY (app_id, walk_id, n)
    ) WITHOUT ROWID""",
    """CREATE TABLE changes (
        app_id     TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        collection TEXT NOT NULL,
        sourced_id TEXT NOT NULL,
        change     TEXT NOT NULL,
        at         TEXT NOT NULL,
        PRIMARY KEY (app_id, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX changes_by_time ON changes (app_id, at)",
    """CREATE TABLE change_seq (
        app_id TEXT PRIMARY KEY,
        last   INTEGER NOT NULL,
        floor  INTEGER NOT NULL,
        key_id TEXT
    )""",
    """CREATE TABLE change_walks (
        app_id   TEXT PRIMARY KEY,
        walk_id  TEXT NOT NULL,
        state    TEXT NOT NULL,
        started  TEXT NOT NULL,
        finished TEXT,
        counts   TEXT NOT NULL,
        error    TEXT,
        key_id   TEXT
    )""",
)

_WALK_COLUMNS = "app_id, walk_id, state, started, finished, counts, error, key_id"


def _walk_row(walk: WalkRecord) -> tuple[Any, ...]:
    return (
        walk.app_id,
        walk.walk_id,
        walk.state,
        _iso(walk.started),
        _iso_or_none(walk.finished),
        json.dumps(walk.counts, separators=(",", ":")),
        walk.error,
        walk.key_id,
    )


def _walk(row: tuple[Any, ...]) -> WalkRecord:
    started = _time(row[3])
    assert started is not None  # NOT NULL column
    return WalkRecord(
        app_id=row[0],
        walk_id=row[1],
        state=row[2],
        started=started,
        finished=_time(row[4]),
        counts=json.loads(row[5]),
        error=row[6],
        key_id=row[7],
    )


def _put_walk(conn: sqlite3.Connection, walk: WalkRecord) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO change_walks ({_WALK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
        _walk_row(walk),
    )


class SqliteChanges(SqliteRole):
    """The ``ChangeStore`` methods of ``SqliteStore``."""

    async def save_walk(self, walk: WalkRecord) -> None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            _put_walk(conn, walk)

        await self._run(op)

    async def get_walk(self, app_id: str) -> WalkRecord | None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> WalkRecord | None:
            row = conn.execute(
                f"SELECT {_WALK_COLUMNS} FROM change_walks WHERE app_id = ?", (app_id,)
            ).fetchone()
            return None if row is None else _walk(row)

        return await self._run(op)

    async def known_hashes(
        self, app_id: str, collection: str, sourced_ids: list[str]
    ) -> dict[str, str]:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(sourced_ids), 500):
                part = sourced_ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = conn.execute(
                    "SELECT sourced_id, hash FROM change_hashes WHERE app_id = ? AND "
                    f"collection = ? AND sourced_id IN ({marks})",
                    (app_id, collection, *part),
                )
                found.update(rows)
            return found

        return await self._run(op)

    async def known_count(self, app_id: str, collection: str) -> int:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count(*) FROM change_hashes WHERE app_id = ? AND collection = ?",
                (app_id, collection),
            ).fetchone()
            return int(row[0])

        return await self._run(op)

    async def stage_hashes(
        self, app_id: str, walk_id: str, collection: str, rows: list[tuple[str, str]]
    ) -> list[str]:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[str]:
            # Staging is the limiter connection's (no fsync per commit): a walk lost to a power
            # cut is walked again, and publish_walk's own commit is fsynced.
            try:
                with _write(limits):
                    before = limits.total_changes
                    limits.executemany(
                        "INSERT OR IGNORE INTO change_stage VALUES (?,?,?,?,?)",
                        [(app_id, walk_id, collection, sid, digest) for sid, digest in rows],
                    )
                    if limits.total_changes - before != len(rows):
                        raise _Repeated  # rolled back: nothing of rows is kept
            except _Repeated:
                return _repeated(limits, app_id, walk_id, collection, rows)
            return []

        return await self._run(op)

    async def stage_changes(
        self, app_id: str, walk_id: str, changes: list[tuple[str, str, str]]
    ) -> None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            with _write(limits):
                row = limits.execute(
                    "SELECT coalesce(max(n), 0) FROM change_stage_log WHERE app_id = ? AND "
                    "walk_id = ?",
                    (app_id, walk_id),
                ).fetchone()
                start = int(row[0]) + 1
                limits.executemany(
                    "INSERT INTO change_stage_log VALUES (?,?,?,?,?,?)",
                    [
                        (app_id, walk_id, start + i, collection, sourced_id, change)
                        for i, (collection, sourced_id, change) in enumerate(changes)
                    ],
                )

        await self._run(op)

    async def missing_ids(
        self, app_id: str, walk_id: str, collection: str, cursor: str
    ) -> tuple[list[str], str | None]:
        def op(
            conn: sqlite3.Connection, limits: sqlite3.Connection
        ) -> tuple[list[str], str | None]:
            rows = conn.execute(
                "SELECT h.sourced_id FROM change_hashes h WHERE h.app_id = ? AND "
                "h.collection = ? AND h.sourced_id > ? AND NOT EXISTS (SELECT 1 FROM "
                "change_stage s WHERE s.app_id = h.app_id AND s.walk_id = ? AND "
                "s.collection = h.collection AND s.sourced_id = h.sourced_id) "
                "ORDER BY h.sourced_id LIMIT ?",
                (app_id, collection, cursor, walk_id, MISSING_BATCH),
            ).fetchall()
            ids = [r[0] for r in rows]
            return ids, (ids[-1] if len(ids) == MISSING_BATCH else None)

        return await self._run(op)

    async def publish_walk(self, walk: WalkRecord, collections: list[str]) -> int:
        app_id, walk_id = walk.app_id, walk.walk_id
        finished = walk.finished
        assert finished is not None

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> int:
            with _write(conn):
                kept = conn.execute(
                    "SELECT walk_id, state FROM change_walks WHERE app_id = ?", (app_id,)
                ).fetchone()
                if kept is None or kept[0] != walk_id or kept[1] not in ("running", "held"):
                    raise NotFound(f"no walk {walk_id} of {app_id} waits to be published")
                seq = conn.execute(
                    "SELECT last, key_id FROM change_seq WHERE app_id = ?", (app_id,)
                ).fetchone()
                last = 0 if seq is None else int(seq[0])
                if seq is not None and seq[1] == walk.key_id:
                    # The same key: an unchanged record's hash is the one kept, so only the
                    # changes are applied (work in proportion to them, not to the district).
                    _apply_changes(conn, app_id, walk_id)
                else:
                    for collection in collections:
                        _replace_hashes(conn, app_id, walk_id, collection)
                published = conn.execute(
                    "INSERT INTO changes SELECT app_id, ? + n, collection, sourced_id, change, ? "
                    "FROM change_stage_log WHERE app_id = ? AND walk_id = ? ORDER BY n",
                    (last, _iso(finished), app_id, walk_id),
                ).rowcount
                conn.execute(
                    "INSERT INTO change_seq (app_id, last, floor, key_id) VALUES (?, ?, 0, ?) "
                    "ON CONFLICT (app_id) DO UPDATE SET last = excluded.last, "
                    "key_id = excluded.key_id",
                    (app_id, last + published, walk.key_id),
                )
                _put_walk(conn, walk)
            # The staging of a published walk is never read again: it goes after the commit,
            # without an fsync of its own (a crash before leaves rows the next drop removes).
            with _write(limits):
                _drop_stage(limits, app_id, walk_id)
            return int(published)

        return await self._run(op)

    async def drop_walk(self, app_id: str, walk_id: str) -> None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            with _write(conn):
                _drop_stage(conn, app_id, walk_id)

        await self._run(op)

    async def read_changes(self, app_id: str, after: int, limit: int) -> list[ChangeRecord]:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[ChangeRecord]:
            rows = conn.execute(
                "SELECT seq, collection, sourced_id, change, at FROM changes WHERE app_id = ? "
                "AND seq > ? ORDER BY seq LIMIT ?",
                (app_id, after, max(0, limit)),
            )
            out = []
            for seq, collection, sourced_id, change, at in rows:
                when = _time(at)
                assert when is not None  # NOT NULL column
                out.append(ChangeRecord(seq, collection, sourced_id, change, when))
            return out

        return await self._run(op)

    async def hashes_key(self, app_id: str) -> str | None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT key_id FROM change_seq WHERE app_id = ?", (app_id,)
            ).fetchone()
            return None if row is None else row[0]

        return await self._run(op)

    async def changes_bounds(self, app_id: str) -> tuple[int, int]:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(
                "SELECT floor, last FROM change_seq WHERE app_id = ?", (app_id,)
            ).fetchone()
            return (0, 0) if row is None else (int(row[0]), int(row[1]))

        return await self._run(op)

    async def trim_changes(self, app_id: str, before: datetime) -> int:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> int:
            with _write(conn):
                row = conn.execute(
                    "SELECT max(seq), count(*) FROM changes WHERE app_id = ? AND at < ?",
                    (app_id, _iso(before)),
                ).fetchone()
                if not row[1]:
                    return 0
                conn.execute("DELETE FROM changes WHERE app_id = ? AND seq <= ?", (app_id, row[0]))
                conn.execute(
                    "UPDATE change_seq SET floor = max(floor, ?) WHERE app_id = ?",
                    (row[0], app_id),
                )
                return int(row[1])

        return await self._run(op)

    async def forget_changes(self, app_id: str) -> None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            with _write(conn):
                for table in (
                    "change_hashes",
                    "change_stage",
                    "change_stage_log",
                    "changes",
                    "change_seq",
                    "change_walks",
                ):
                    conn.execute(f"DELETE FROM {table} WHERE app_id = ?", (app_id,))

        await self._run(op)


class _Repeated(Exception):
    """Some sourcedId of a page was staged already: the page's insert is undone."""


def _repeated(
    conn: sqlite3.Connection,
    app_id: str,
    walk_id: str,
    collection: str,
    rows: list[tuple[str, str]],
) -> list[str]:
    """Which of ``rows`` this walk staged before (or ``rows`` holds twice)."""
    seen: set[str] = set()
    repeated = []
    for sourced_id, _ in rows:
        if sourced_id in seen:
            repeated.append(sourced_id)
        seen.add(sourced_id)
    for start in range(0, len(rows), 500):
        part = [sid for sid, _ in rows[start : start + 500]]
        marks = ",".join("?" * len(part))
        staged = conn.execute(
            "SELECT sourced_id FROM change_stage WHERE app_id = ? AND walk_id = ? "
            f"AND collection = ? AND sourced_id IN ({marks})",
            (app_id, walk_id, collection, *part),
        )
        repeated += [row[0] for row in staged]
    return repeated


def _replace_hashes(conn: sqlite3.Connection, app_id: str, walk_id: str, collection: str) -> None:
    conn.execute(
        "DELETE FROM change_hashes WHERE app_id = ? AND collection = ?", (app_id, collection)
    )
    conn.execute(
        "INSERT INTO change_hashes SELECT app_id, collection, sourced_id, hash "
        "FROM change_stage WHERE app_id = ? AND walk_id = ? AND collection = ?",
        (app_id, walk_id, collection),
    )


def _apply_changes(conn: sqlite3.Connection, app_id: str, walk_id: str) -> None:
    conn.execute(
        "DELETE FROM change_hashes WHERE app_id = ? AND (collection, sourced_id) IN "
        "(SELECT collection, sourced_id FROM change_stage_log WHERE app_id = ? AND "
        "walk_id = ? AND change = 'deleted')",
        (app_id, app_id, walk_id),
    )
    conn.execute(
        "INSERT OR REPLACE INTO change_hashes SELECT s.app_id, s.collection, s.sourced_id, "
        "s.hash FROM change_stage_log l JOIN change_stage s ON s.app_id = l.app_id AND "
        "s.walk_id = l.walk_id AND s.collection = l.collection AND s.sourced_id = l.sourced_id "
        "WHERE l.app_id = ? AND l.walk_id = ? AND l.change IN ('created', 'updated')",
        (app_id, walk_id),
    )


def _drop_stage(conn: sqlite3.Connection, app_id: str, walk_id: str) -> None:
    for table in ("change_stage", "change_stage_log"):
        conn.execute(f"DELETE FROM {table} WHERE app_id = ? AND walk_id = ?", (app_id, walk_id))
