"""Console sessions in the sqlite store (``SessionStore`` of ``base.py``; docs/http-api.md
"Console"): the ``console_sessions`` table holds the SHA-256 of each session's nonce and when
it ends, so "Sign out" ends a session for every process sharing the file, and a restart does
not bring it back. Mixed into ``SqliteStore``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from proxy.store.sqlite_rows import SqliteRole, _iso

#: The table (applied by ``SqliteStore``'s migrations).
TABLES: tuple[str, ...] = (
    """CREATE TABLE console_sessions (
        id      TEXT PRIMARY KEY,
        expires TEXT NOT NULL
    )""",
)


class SqliteSessions(SqliteRole):
    """The ``SessionStore`` methods of ``SqliteStore``."""

    async def add_session(self, session_id: str, expires: datetime) -> None:
        row = (session_id, _iso(expires))

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            # Ended sessions go as new ones come: the table holds only live ones.
            conn.execute(
                "DELETE FROM console_sessions WHERE expires <= ?", (_iso(datetime.now(UTC)),)
            )
            conn.execute("INSERT OR REPLACE INTO console_sessions (id, expires) VALUES (?, ?)", row)

        await self._run(op)

    async def session_active(self, session_id: str, at: datetime) -> bool:
        when = _iso(at)

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM console_sessions WHERE id = ? AND expires > ?", (session_id, when)
            ).fetchone()
            return row is not None

        return await self._run(op)

    async def end_session(self, session_id: str) -> None:
        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM console_sessions WHERE id = ?", (session_id,))

        await self._run(op)
