"""Districts and connections in the sqlite store (``ConnectionStore`` of ``base.py``).

docs/commands.md. Two tables, one row per district and per connection;
list-valued fields (versions, scopes) are comma-joined text, booleans 0/1, the secret is the
sealed text of ``proxy.store.crypto``. Every write that checks before it changes (name taken,
district in use) runs in one ``BEGIN IMMEDIATE`` transaction, so two processes cannot both
pass the check. Each record has a ``version``: an update changes the row only ``WHERE version
= <the version read>`` (``Stale`` otherwise), and its audit row is inserted in the same
transaction. Mixed into ``SqliteStore``, which supplies ``_run`` (the store's one thread).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, NoReturn

from proxy.errors import Conflict, NotFound, Stale
from proxy.store.base import AuditEvent, ConnectionRecord, DistrictRecord
from proxy.store.sqlite_rows import SqliteRole, _audit, _iso, _time, _write

#: Schema 3 of the sqlite store (schema 5 adds ``COURTESY_COLUMNS``): applied by
#: ``SqliteStore``'s migrations.
TABLES: tuple[str, ...] = (
    """CREATE TABLE districts (
        name                 TEXT PRIMARY KEY,
        base_url             TEXT NOT NULL,
        auth                 TEXT NOT NULL,
        signature_method     TEXT NOT NULL,
        token_url            TEXT,
        vendor_authorization INTEGER NOT NULL,
        versions             TEXT NOT NULL,
        max_connections      INTEGER,
        max_wait             TEXT,
        rate_limit           TEXT,
        created              TEXT NOT NULL,
        updated              TEXT NOT NULL
    )""",
    """CREATE TABLE connections (
        app_id   TEXT PRIMARY KEY,
        vendor   TEXT NOT NULL,
        district TEXT NOT NULL,
        key      TEXT NOT NULL,
        secret   TEXT NOT NULL,
        scopes   TEXT NOT NULL,
        enabled  INTEGER NOT NULL,
        expires  TEXT,
        created  TEXT NOT NULL,
        updated  TEXT NOT NULL,
        source   TEXT NOT NULL
    )""",
    "CREATE INDEX connections_by_district ON connections (district, app_id)",
    "CREATE INDEX connections_by_vendor ON connections (vendor, app_id)",
)
#: Schema 6: a version per district and per connection (compare-and-set).
VERSIONS: tuple[str, ...] = (
    "ALTER TABLE districts ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE connections ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
)

#: Schema 5: a district's time zone, windows and pauses (docs/configuration.md "SIS courtesy").
COURTESY_COLUMNS: tuple[str, ...] = (
    "ALTER TABLE districts ADD COLUMN timezone TEXT",
    "ALTER TABLE districts ADD COLUMN windows TEXT",
    "ALTER TABLE districts ADD COLUMN pauses TEXT",
)

_D_COLUMNS = (
    "name, base_url, auth, signature_method, token_url, vendor_authorization, versions, "
    "max_connections, max_wait, rate_limit, timezone, windows, pauses, created, updated, version"
)
_D_COUNT = len(_D_COLUMNS.split(", "))
_C_COLUMNS = (
    "app_id, vendor, district, key, secret, scopes, enabled, expires, created, updated, source, "
    "version, drop_fields"
)
_C_COUNT = len(_C_COLUMNS.split(", "))
#: The sharing policy's column (``sqlite_ledger.ensure_sharing_schema``): JSON text, NULL for
#: the default policy.
DROP_FIELDS_COLUMN = "ALTER TABLE connections ADD COLUMN drop_fields TEXT"
# Every column but name, created, updated and version.
_D_UPDATE = ", ".join(f"{c} = ?" for c in _D_COLUMNS.split(", ")[1:-3])


def _req_time(text: str) -> datetime:
    value = _time(text)
    assert value is not None  # NOT NULL column
    return value


def _district_row(r: DistrictRecord) -> tuple[Any, ...]:
    return (
        r.name,
        r.base_url,
        r.auth,
        r.signature_method,
        r.token_url,
        int(r.vendor_authorization),
        ",".join(r.versions),
        r.max_connections,
        r.max_wait,
        r.rate_limit,
        r.timezone,
        r.windows,
        r.pauses,
        _iso(r.created),
        _iso(r.updated),
        1,
    )


def _district(row: tuple[Any, ...]) -> DistrictRecord:
    return DistrictRecord(
        name=row[0],
        base_url=row[1],
        auth=row[2],
        signature_method=row[3],
        token_url=row[4],
        vendor_authorization=bool(row[5]),
        versions=tuple(v for v in row[6].split(",") if v),
        max_connections=row[7],
        max_wait=row[8],
        rate_limit=row[9],
        timezone=row[10],
        windows=row[11],
        pauses=row[12],
        created=_req_time(row[13]),
        updated=_req_time(row[14]),
        version=row[15],
    )


def _connection_row(r: ConnectionRecord) -> tuple[Any, ...]:
    return (
        r.app_id,
        r.vendor,
        r.district,
        r.key,
        r.secret,
        ",".join(r.scopes),
        int(r.enabled),
        r.expires.isoformat() if r.expires else None,
        _iso(r.created),
        _iso(r.updated),
        r.source,
        1,
        None if r.drop_fields is None else json.dumps(list(r.drop_fields)),
    )


def _connection(row: tuple[Any, ...]) -> ConnectionRecord:
    return ConnectionRecord(
        app_id=row[0],
        vendor=row[1],
        district=row[2],
        key=row[3],
        secret=row[4],
        scopes=tuple(s for s in row[5].split(",") if s),
        enabled=bool(row[6]),
        expires=date.fromisoformat(row[7]) if row[7] else None,
        created=_req_time(row[8]),
        updated=_req_time(row[9]),
        source=row[10],
        version=row[11],
        drop_fields=None if row[12] is None else tuple(json.loads(row[12])),
    )


class SqliteConnections(SqliteRole):
    """The ``ConnectionStore`` methods of ``SqliteStore``."""

    # -- districts ------------------------------------------------------------------------------

    async def add_district(
        self, record: DistrictRecord, *, audit: AuditEvent | None = None
    ) -> None:
        row = _district_row(record)

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            with _write(conn):
                if conn.execute(
                    "SELECT 1 FROM districts WHERE name = ?", (record.name,)
                ).fetchone():
                    raise Conflict(f'district "{record.name}" already exists')
                conn.execute(
                    f"INSERT INTO districts ({_D_COLUMNS}) VALUES ({_marks(_D_COUNT)})", row
                )
                _audit(conn, audit)

        await self._run(op)

    async def get_district(self, name: str) -> DistrictRecord | None:
        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> DistrictRecord | None:
            row = conn.execute(
                f"SELECT {_D_COLUMNS} FROM districts WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else _district(row)

        return await self._run(op)

    async def list_districts(self) -> list[DistrictRecord]:
        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> list[DistrictRecord]:
            rows = conn.execute(f"SELECT {_D_COLUMNS} FROM districts ORDER BY name")
            return [_district(row) for row in rows]

        return await self._run(op)

    async def update_district(
        self,
        record: DistrictRecord,
        *,
        reseal: Mapping[str, tuple[int, str]] | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        row = _district_row(record)
        values = (*row[1:-3], row[-2], record.name, record.version)
        updated = row[-2]

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            with _write(conn):
                changed = conn.execute(
                    f"UPDATE districts SET {_D_UPDATE}, updated = ?, version = version + 1 "
                    "WHERE name = ? AND version = ?",
                    values,
                ).rowcount
                if not changed:
                    _not_written(
                        conn, "districts", "name", record.name, f'district "{record.name}"'
                    )
                if reseal is not None:
                    users = dict(
                        conn.execute(
                            "SELECT app_id, version FROM connections WHERE district = ?",
                            (record.name,),
                        ).fetchall()
                    )
                    if users != {app_id: seen for app_id, (seen, _) in reseal.items()}:
                        raise Stale(
                            f'the connections of district "{record.name}" changed meanwhile; '
                            "try again"
                        )
                    conn.executemany(
                        "UPDATE connections SET secret = ?, updated = ?, version = version + 1 "
                        "WHERE app_id = ?",
                        [(sealed, updated, app_id) for app_id, (_, sealed) in reseal.items()],
                    )
                _audit(conn, audit)

        await self._run(op)

    async def remove_district(self, name: str, *, audit: AuditEvent | None = None) -> None:
        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            with _write(conn):
                user = conn.execute(
                    "SELECT app_id FROM connections WHERE district = ? ORDER BY app_id LIMIT 1",
                    (name,),
                ).fetchone()
                if user is not None:
                    raise Conflict(f'district "{name}" is in use by connection {user[0]}')
                if not conn.execute("DELETE FROM districts WHERE name = ?", (name,)).rowcount:
                    raise NotFound(f'no district "{name}" in the store')
                _audit(conn, audit)

        await self._run(op)

    # -- connections ----------------------------------------------------------------------------

    async def add_connection(
        self,
        record: ConnectionRecord,
        *,
        district_in_store: bool,
        audit: AuditEvent | None = None,
    ) -> None:
        row = _connection_row(record)

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            with _write(conn):
                taken = conn.execute(
                    "SELECT 1 FROM connections WHERE app_id = ?", (record.app_id,)
                ).fetchone()
                if taken:
                    raise Conflict(f"connection {record.app_id} already exists")
                if (
                    district_in_store
                    and not conn.execute(
                        "SELECT 1 FROM districts WHERE name = ?", (record.district,)
                    ).fetchone()
                ):
                    raise NotFound(f'no district "{record.district}" in the store')
                conn.execute(
                    f"INSERT INTO connections ({_C_COLUMNS}) VALUES ({_marks(_C_COUNT)})", row
                )
                _audit(conn, audit)

        await self._run(op)

    async def get_connection(self, app_id: str) -> ConnectionRecord | None:
        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> ConnectionRecord | None:
            row = conn.execute(
                f"SELECT {_C_COLUMNS} FROM connections WHERE app_id = ?", (app_id,)
            ).fetchone()
            return None if row is None else _connection(row)

        return await self._run(op)

    async def resolve_connection(
        self, app_id: str
    ) -> tuple[ConnectionRecord, DistrictRecord | None] | None:
        c_cols = ", ".join(f"c.{c}" for c in _C_COLUMNS.split(", "))
        d_cols = ", ".join(f"d.{c}" for c in _D_COLUMNS.split(", "))
        query = (
            f"SELECT {c_cols}, {d_cols} FROM connections c "
            "LEFT JOIN districts d ON d.name = c.district WHERE c.app_id = ?"
        )

        def op(
            conn: sqlite3.Connection, _: sqlite3.Connection
        ) -> tuple[ConnectionRecord, DistrictRecord | None] | None:
            row = conn.execute(query, (app_id,)).fetchone()
            if row is None:
                return None
            district = None if row[_C_COUNT] is None else _district(row[_C_COUNT:])
            return _connection(row[:_C_COUNT]), district

        return await self._run(op)

    async def list_connections(
        self, *, vendor: str | None = None, after: str = "", limit: int = 500
    ) -> list[ConnectionRecord]:
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> list[ConnectionRecord]:
            if vendor is None:
                rows = conn.execute(
                    f"SELECT {_C_COLUMNS} FROM connections WHERE app_id > ? "
                    "ORDER BY app_id LIMIT ?",
                    (after, limit),
                )
            else:
                rows = conn.execute(
                    f"SELECT {_C_COLUMNS} FROM connections WHERE vendor = ? AND app_id > ? "
                    "ORDER BY app_id LIMIT ?",
                    (vendor, after, limit),
                )
            return [_connection(row) for row in rows]

        return await self._run(op)

    async def update_connection(
        self, record: ConnectionRecord, *, audit: AuditEvent | None = None
    ) -> None:
        row = _connection_row(record)
        # Every column but app_id, district and created (row order of _C_COLUMNS).
        values = (
            *(row[1], row[3], row[4], row[5], row[6], row[7], row[9], row[10], row[12]),
            record.app_id,
            record.version,
        )

        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            with _write(conn):
                changed = conn.execute(
                    "UPDATE connections SET vendor = ?, key = ?, secret = ?, scopes = ?, "
                    "enabled = ?, expires = ?, updated = ?, source = ?, drop_fields = ?, "
                    "version = version + 1 "
                    "WHERE app_id = ? AND version = ?",
                    values,
                ).rowcount
                if not changed:
                    _not_written(
                        conn, "connections", "app_id", record.app_id, f"connection {record.app_id}"
                    )
                _audit(conn, audit)

        await self._run(op)

    async def remove_connection(self, app_id: str, *, audit: AuditEvent | None = None) -> None:
        def op(conn: sqlite3.Connection, _: sqlite3.Connection) -> None:
            with _write(conn):
                if not conn.execute("DELETE FROM connections WHERE app_id = ?", (app_id,)).rowcount:
                    raise NotFound(f"no connection {app_id} in the store")
                # Its check history goes with it: an appId added again starts with no last
                # check.
                conn.execute("DELETE FROM check_results WHERE app_id = ?", (app_id,))
                _audit(conn, audit)

        await self._run(op)


def _not_written(
    conn: sqlite3.Connection, table: str, column: str, key: str, what: str
) -> NoReturn:
    """Why a compare-and-set update changed no row: NotFound, or Stale (another version)."""
    if conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (key,)).fetchone() is None:
        raise NotFound(f"no {what} in the store")
    raise Stale(f"{what} changed meanwhile; try again")


def _marks(n: int) -> str:
    return ",".join("?" * n)
