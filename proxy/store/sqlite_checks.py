"""Background check results and intake links in the sqlite store (``CheckStore`` of
``base.py``): the ``check_results`` table (the newest ``CHECK_HISTORY`` per appId kept) and the
``invites`` table (only a token's hash). Mixed into ``SqliteStore``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from proxy.store.base import (
    CHECK_HISTORY,
    CheckResult,
    InviteRecord,
)
from proxy.store.sqlite_rows import SqliteRole, _iso, _iso_or_none, _time, _write

_INVITE_COLUMNS = "token_hash, app_id, vendor, district_name, scopes, created, expires, spent"


def _check_result(row: tuple[Any, ...]) -> CheckResult:
    at = _time(row[1])
    assert at is not None  # NOT NULL column
    return CheckResult(app_id=row[0], at=at, document=json.loads(row[2]))


def _invite(row: tuple[Any, ...]) -> InviteRecord:
    created, expires = _time(row[5]), _time(row[6])
    assert created is not None and expires is not None  # NOT NULL columns
    return InviteRecord(
        token_hash=row[0],
        app_id=row[1],
        vendor=row[2],
        district_name=row[3],
        scopes=tuple(json.loads(row[4])),
        created=created,
        expires=expires,
        spent=_time(row[7]),
    )


class SqliteChecks(SqliteRole):
    """The ``CheckStore`` methods of ``SqliteStore``."""

    # -- background checks and intake links ---------------------------------------------------

    async def add_check_result(self, result: CheckResult) -> None:
        row = (result.app_id, _iso(result.at), json.dumps(result.document, separators=(",", ":")))

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute("INSERT INTO check_results (app_id, at, document) VALUES (?,?,?)", row)
                conn.execute(
                    "DELETE FROM check_results WHERE app_id = ? AND seq NOT IN "
                    "(SELECT seq FROM check_results WHERE app_id = ? ORDER BY seq DESC LIMIT ?)",
                    (result.app_id, result.app_id, CHECK_HISTORY),
                )

        await self._run(op)

    async def list_check_results(
        self, app_id: str, limit: int = CHECK_HISTORY
    ) -> list[CheckResult]:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[CheckResult]:
            rows = conn.execute(
                "SELECT app_id, at, document FROM check_results WHERE app_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (app_id, max(0, limit)),
            )
            return [_check_result(row) for row in rows]

        return await self._run(op)

    async def last_check_results(self, app_ids: list[str]) -> dict[str, list[CheckResult]]:
        wanted = set(app_ids)

        def op(
            conn: sqlite3.Connection, limits: sqlite3.Connection
        ) -> dict[str, list[CheckResult]]:
            rows = conn.execute(
                "SELECT app_id, at, document FROM ("
                " SELECT app_id, at, document, seq,"
                " row_number() OVER (PARTITION BY app_id ORDER BY seq DESC) AS n"
                " FROM check_results) WHERE n <= 2 ORDER BY app_id, seq DESC"
            )
            out: dict[str, list[CheckResult]] = {}
            for row in rows:
                if row[0] in wanted:
                    out.setdefault(row[0], []).append(_check_result(row))
            return out

        return await self._run(op)

    async def add_invite(self, invite: InviteRecord) -> None:
        row = (
            invite.token_hash,
            invite.app_id,
            invite.vendor,
            invite.district_name,
            json.dumps(list(invite.scopes)),
            _iso(invite.created),
            _iso(invite.expires),
            _iso_or_none(invite.spent),
        )

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO invites ({_INVITE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", row)

        try:
            await self._run(op)
        except sqlite3.IntegrityError as exc:
            raise ValueError("an invite with that token already exists") from exc

    async def get_invite(self, token_hash: str) -> InviteRecord | None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> InviteRecord | None:
            row = conn.execute(
                f"SELECT {_INVITE_COLUMNS} FROM invites WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            return None if row is None else _invite(row)

        return await self._run(op)

    async def spend_invite(self, token_hash: str, at: datetime) -> bool:
        when = _iso(at)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE invites SET spent = ? "
                "WHERE token_hash = ? AND spent IS NULL AND expires > ?",
                (when, token_hash, when),
            )
            return cursor.rowcount == 1

        return await self._run(op)
