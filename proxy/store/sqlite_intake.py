"""Outstanding intake links and what a spent link saves, in the sqlite store (``IntakeStore``
of ``base.py``; THREAT_MODEL.md "The intake link"). Mixed into ``SqliteStore``.

``save_intake`` is the one step that spends a link and saves what it connected: in one
``BEGIN IMMEDIATE`` transaction it checks the link is still usable, that no other connection
uses the district and that the appId is still the invite's, then writes the district and the
connection and marks the link spent. A refusal writes nothing.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from proxy.errors import Conflict, NotFound
from proxy.store.base import IntakeSave, InviteRecord
from proxy.store.sqlite_checks import _INVITE_COLUMNS, _invite
from proxy.store.sqlite_connections import (
    _C_COLUMNS,
    _C_COUNT,
    _D_COLUMNS,
    _D_COUNT,
    _D_UPDATE,
    _connection_row,
    _district_row,
    _marks,
)
from proxy.store.sqlite_rows import SqliteRole, _audit, _iso, _write


class SqliteIntake(SqliteRole):
    """The ``IntakeStore`` methods of ``SqliteStore``."""

    async def list_invites(self, at: datetime) -> list[InviteRecord]:
        when = _iso(at)

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> list[InviteRecord]:
            rows = conn.execute(
                f"SELECT {_INVITE_COLUMNS} FROM invites WHERE spent IS NULL AND expires > ? "
                "ORDER BY created, app_id",
                (when,),
            )
            return [_invite(row) for row in rows]

        return await self._run(op)

    async def revoke_invites(self, app_id: str, at: datetime) -> int:
        when = _iso(at)

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE invites SET spent = ? WHERE app_id = ? AND spent IS NULL AND expires > ?",
                (when, app_id, when),
            )
            return int(cursor.rowcount)

        return await self._run(op)

    async def save_intake(self, save: IntakeSave) -> bool:
        token_hash, district, connection = save.token_hash, save.district, save.connection
        when = _iso(save.at)
        d_row, c_row = _district_row(district), _connection_row(connection)

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> bool:
            with _write(conn):
                usable = conn.execute(
                    "SELECT 1 FROM invites WHERE token_hash = ? AND spent IS NULL AND expires > ?",
                    (token_hash, when),
                ).fetchone()
                if usable is None:
                    raise NotFound("unknown, expired or spent intake link")
                other = conn.execute(
                    "SELECT app_id FROM connections WHERE district = ? AND app_id != ? "
                    "ORDER BY app_id LIMIT 1",
                    (district.name, connection.app_id),
                ).fetchone()
                if other is not None:
                    # SECURITY: the intake would change a district another connection uses.
                    raise Conflict(f'district "{district.name}" is used by another connection')
                old = conn.execute(
                    "SELECT vendor, district FROM connections WHERE app_id = ?",
                    (connection.app_id,),
                ).fetchone()
                if old is not None and tuple(old) != (connection.vendor, connection.district):
                    raise Conflict(
                        f"connection {connection.app_id} changed since the link was made"
                    )
                if conn.execute(
                    "SELECT 1 FROM districts WHERE name = ?", (district.name,)
                ).fetchone():
                    conn.execute(
                        f"UPDATE districts SET {_D_UPDATE}, updated = ?, version = version + 1 "
                        "WHERE name = ?",
                        (*d_row[1:-3], d_row[-2], district.name),
                    )
                else:
                    conn.execute(
                        f"INSERT INTO districts ({_D_COLUMNS}) VALUES ({_marks(_D_COUNT)})", d_row
                    )
                if old is None:
                    conn.execute(
                        f"INSERT INTO connections ({_C_COLUMNS}) VALUES ({_marks(_C_COUNT)})", c_row
                    )
                else:
                    conn.execute(
                        "UPDATE connections SET key = ?, secret = ?, scopes = ?, enabled = ?, "
                        "expires = ?, updated = ?, version = version + 1 WHERE app_id = ?",
                        (c_row[3], c_row[4], c_row[5], c_row[6], c_row[7], c_row[9], c_row[0]),
                    )
                conn.execute(
                    "UPDATE invites SET spent = ? WHERE token_hash = ?", (when, token_hash)
                )
                _audit(conn, save.audit)
                return old is None

        return await self._run(op)
