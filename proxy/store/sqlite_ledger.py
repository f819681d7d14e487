"""The access ledger in the sqlite store (``LedgerStore`` of ``base.py``): the ``ledger`` table,
one row per appId, UTC day and collection; counts add up in one write transaction per batch.
Mixed into ``SqliteStore``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from typing import Any

from proxy.store.base import LedgerRow, merge_ledger
from proxy.store.sqlite_connections import DROP_FIELDS_COLUMN
from proxy.store.sqlite_rows import SqliteRole, _write

TABLES = (
    """CREATE TABLE ledger (
        app        TEXT NOT NULL,
        day        TEXT NOT NULL,
        collection TEXT NOT NULL,
        vendor     TEXT NOT NULL,
        district   TEXT NOT NULL,
        requests   INTEGER NOT NULL,
        records    INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        status     TEXT NOT NULL,
        fields     TEXT NOT NULL,
        PRIMARY KEY (app, day, collection)
    )""",
    "CREATE INDEX ledger_by_day ON ledger (day, app, collection)",
)


def ensure_sharing_schema(conn: sqlite3.Connection) -> None:
    """The ledger table and the connections' ``drop_fields`` column, added to a file that has
    not got them (checked by name, not by schema version: one read when both are there)."""

    def missing() -> tuple[bool, bool]:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(connections)")}
        return "ledger" not in tables, "drop_fields" not in columns

    if not any(missing()):
        return
    with _write(conn):
        ledger, column = missing()  # another process may have added them meanwhile
        if ledger:
            for statement in TABLES:
                conn.execute(statement)
        if column:
            conn.execute(DROP_FIELDS_COLUMN)


_COLUMNS = "app, day, collection, vendor, district, requests, records, bytes, status, fields"


def _row(row: tuple[Any, ...]) -> LedgerRow:
    return LedgerRow(
        app=row[0],
        day=date.fromisoformat(row[1]),
        collection=row[2],
        vendor=row[3],
        district=row[4],
        requests=row[5],
        records=row[6],
        bytes=row[7],
        status=json.loads(row[8]),
        fields=tuple(json.loads(row[9])),
    )


class SqliteLedger(SqliteRole):
    """The ``LedgerStore`` methods of ``SqliteStore``."""

    async def add_ledger(self, rows: list[LedgerRow]) -> None:
        if not rows:
            return

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            with _write(conn):
                for new in rows:
                    found = conn.execute(
                        f"SELECT {_COLUMNS} FROM ledger WHERE app = ? AND day = ? "
                        "AND collection = ?",
                        (new.app, new.day.isoformat(), new.collection),
                    ).fetchone()
                    row = merge_ledger(None if found is None else _row(found), new)
                    conn.execute(
                        f"INSERT OR REPLACE INTO ledger ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (
                            row.app,
                            row.day.isoformat(),
                            row.collection,
                            row.vendor,
                            row.district,
                            row.requests,
                            row.records,
                            row.bytes,
                            json.dumps(row.status, sort_keys=True),
                            json.dumps(list(row.fields)),
                        ),
                    )

        await self._run(op)

    async def list_ledger(
        self, *, app: str | None = None, vendor: str | None = None, since: date | None = None
    ) -> list[LedgerRow]:
        where, args = ["day >= ?"], [(since or date.min).isoformat()]
        if app is not None:
            where.append("app = ?")
            args.append(app)
        if vendor is not None:
            where.append("vendor = ?")
            args.append(vendor)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[LedgerRow]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM ledger WHERE {' AND '.join(where)} "
                "ORDER BY day, app, collection",
                args,
            )
            return [_row(r) for r in rows]

        return await self._run(op)

    async def prune_ledger(self, before: date) -> int:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM ledger WHERE day < ?", (before.isoformat(),)).rowcount

        return await self._run(op)
