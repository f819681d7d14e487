"""Vendor tokens in the sqlite store (``TokenStore`` of ``base.py``): the ``tokens`` table and
the per-vendor ``vendor_auth`` row (the JWT "not before" time, the client secret's
fingerprint). Mixed into ``SqliteStore``, which supplies ``_run`` (the store's one thread).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime
from typing import Any

from proxy.store.base import (
    AuditEvent,
    TokenRecord,
    VendorAuth,
)
from proxy.store.sqlite_rows import SqliteRole, _audit, _iso, _iso_or_none, _time, _write

_TOKEN_COLUMNS = "id, vendor, secret_hash, prefix, created, expires, revoked, last_used"


def _token_row(record: TokenRecord) -> tuple[str | None, ...]:
    """The ``tokens`` row of a record, columns in ``_TOKEN_COLUMNS`` order."""
    return (
        record.id,
        record.vendor,
        record.secret_hash,
        record.prefix,
        _iso(record.created),
        _iso_or_none(record.expires),
        _iso_or_none(record.revoked),
        _iso_or_none(record.last_used),
    )


def _record(row: tuple[Any, ...]) -> TokenRecord:
    created = _time(row[4])
    assert created is not None  # NOT NULL column
    return TokenRecord(
        id=row[0],
        vendor=row[1],
        secret_hash=row[2],
        prefix=row[3],
        created=created,
        expires=_time(row[5]),
        revoked=_time(row[6]),
        last_used=_time(row[7]),
    )


class SqliteTokens(SqliteRole):
    """The ``TokenStore`` methods of ``SqliteStore``."""

    # -- tokens -------------------------------------------------------------------------------

    async def add_token(self, record: TokenRecord, *, audit: AuditEvent | None = None) -> None:
        row = _token_row(record)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", row)
                _audit(conn, audit)

        try:
            await self._run(op)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"token id {record.id!r} already exists") from exc

    async def get_token(self, token_id: str) -> TokenRecord | None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,)
            ).fetchone()
            return None if row is None else _record(row)

        return await self._run(op)

    async def list_tokens(self, vendor: str | None = None) -> list[TokenRecord]:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[TokenRecord]:
            if vendor is None:
                rows = conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created, id")
            else:
                rows = conn.execute(
                    f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE vendor = ? ORDER BY created, id",
                    (vendor,),
                )
            return [_record(row) for row in rows]

        return await self._run(op)

    async def revoke_token(
        self, token_id: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> bool:
        when = _iso(at)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> bool:
            with _write(conn):
                cursor = conn.execute(
                    "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                    (when, token_id),
                )
                if cursor.rowcount != 1:
                    return False
                _audit(conn, audit)
                return True

        return await self._run(op)

    async def revoke_vendor(
        self, vendor: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> list[str]:
        when = _iso(at)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[str]:
            with _write(conn):
                ids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM tokens WHERE vendor = ? AND revoked IS NULL "
                        "ORDER BY created, id",
                        (vendor,),
                    )
                ]
                conn.execute(
                    "UPDATE tokens SET revoked = ? WHERE vendor = ? AND revoked IS NULL",
                    (when, vendor),
                )
                if audit is not None:
                    _audit(conn, replace(audit, detail={**audit.detail, "token_ids": ids}))
            return ids

        return await self._run(op)

    async def expire_vendor(self, vendor: str, at: datetime, keep: str) -> list[str]:
        when = _iso(at)
        where = "vendor = ? AND id != ? AND revoked IS NULL AND (expires IS NULL OR expires > ?)"

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[str]:
            with _write(conn):
                ids = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM tokens WHERE {where} ORDER BY created, id",
                        (vendor, keep, when),
                    )
                ]
                conn.execute(
                    f"UPDATE tokens SET expires = ? WHERE {where}", (when, vendor, keep, when)
                )
            return ids

        return await self._run(op)

    async def get_vendor_auth(self, vendor: str) -> VendorAuth | None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> VendorAuth | None:
            row = conn.execute(
                "SELECT jwt_not_before, secret_fingerprint FROM vendor_auth WHERE vendor = ?",
                (vendor,),
            ).fetchone()
            return None if row is None else VendorAuth(_time(row[0]), row[1])

        return await self._run(op)

    async def set_jwt_not_before(self, vendor: str, at: datetime) -> None:
        when = _iso(at)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            # Fixed-width ISO text compares as time: max() keeps the later instant.
            conn.execute(
                "INSERT INTO vendor_auth (vendor, jwt_not_before) VALUES (?, ?) "
                "ON CONFLICT (vendor) DO UPDATE SET jwt_not_before = "
                "max(coalesce(jwt_not_before, ''), excluded.jwt_not_before)",
                (vendor, when),
            )

        await self._run(op)

    async def set_secret_fingerprint(
        self, vendor: str, fingerprint: str, *, not_before: datetime | None = None
    ) -> None:
        if not fingerprint:
            raise ValueError("an empty secret fingerprint")
        when = _iso_or_none(not_before)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO vendor_auth (vendor, jwt_not_before, secret_fingerprint) "
                "VALUES (?, ?, ?) ON CONFLICT (vendor) DO UPDATE SET "
                "secret_fingerprint = excluded.secret_fingerprint, "
                "jwt_not_before = CASE WHEN excluded.jwt_not_before IS NULL "
                "THEN jwt_not_before ELSE max(coalesce(jwt_not_before, ''), "
                "excluded.jwt_not_before) END",
                (vendor, when, fingerprint),
            )

        await self._run(op)

    async def touch(self, last_used: dict[str, datetime]) -> None:
        if not last_used:
            return
        rows = [(_iso(at), token_id, _iso(at)) for token_id, at in last_used.items()]

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            with _write(conn):
                # Several processes touch the same token: the latest use wins, whoever is last.
                conn.executemany(
                    "UPDATE tokens SET last_used = ? "
                    "WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
                    rows,
                )

        await self._run(op)

    async def count_active(self, at: datetime) -> dict[str, int]:
        when = _iso(at)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT vendor, sum((expires IS NULL OR expires > ?) "
                "AND (revoked IS NULL OR revoked > ?)) FROM tokens GROUP BY vendor",
                (when, when),
            )
            return {vendor: int(count) for vendor, count in rows}

        return await self._run(op)
