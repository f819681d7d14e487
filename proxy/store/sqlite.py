"""The embedded store: one sqlite file shared by the running proxy and the CLI.

SPEC.md "Config" (``[store] url = "sqlite:///var/lib/oneroster-proxy/store.db"``, the default)
and "Install and commands" (``tokens issue`` works before ``serve`` starts and while it runs,
same store). Another process writes the same file a running proxy reads, so the file is in WAL
mode (readers never wait for the writer) and every connection has a ``busy_timeout`` (a writer
waits for the other writer instead of failing at once).

``sqlite3`` blocks, and a connection must stay on the thread that made it, so every call runs
on one dedicated thread: that thread also serialises this process's calls without a lock.

Times are stored as ISO-8601 UTC text with microseconds (``2026-01-31T12:00:00.000000+00:00``):
fixed width, so SQL compares them as times, and readable with the ``sqlite3`` shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreUnavailable
from .base import (
    CHECK_HISTORY,
    AuditEvent,
    CheckResult,
    InviteRecord,
    TokenRecord,
    VendorAuth,
    validate_bucket,
    validate_slot,
)
from .sqlite_connections import TABLES as CONNECTION_TABLES
from .sqlite_connections import SqliteConnections
from .sqlite_rows import _iso, _iso_or_none, _time, _write

T = TypeVar("T")

SCHEMA_VERSION = 4

# Migration n takes a file at schema n-1 to schema n; applied in order in one transaction.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE tokens (
            id          TEXT PRIMARY KEY,
            vendor      TEXT NOT NULL,
            secret_hash TEXT NOT NULL,
            prefix      TEXT NOT NULL,
            created     TEXT NOT NULL,
            expires     TEXT,
            revoked     TEXT,
            last_used   TEXT
        )""",
        "CREATE INDEX tokens_by_created ON tokens (created, id)",
        "CREATE INDEX tokens_by_vendor ON tokens (vendor, created, id)",
        """CREATE TABLE audit (
            seq       INTEGER PRIMARY KEY AUTOINCREMENT,
            at        TEXT NOT NULL,
            action    TEXT NOT NULL,
            interface TEXT NOT NULL,
            vendor    TEXT,
            token_id  TEXT,
            detail    TEXT NOT NULL
        )""",
        # Limiter state (token buckets, semaphore slots): times are epoch seconds from the
        # host clock, which every process on this host shares.
        """CREATE TABLE buckets (
            key     TEXT PRIMARY KEY,
            tokens  REAL NOT NULL,
            updated REAL NOT NULL
        )""",
        """CREATE TABLE slots (
            key     TEXT NOT NULL,
            holder  TEXT NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (key, holder)
        )""",
    ),
    2: (
        # Background checks: the check --json document of each run, newest kept per app.
        """CREATE TABLE check_results (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            app_id   TEXT NOT NULL,
            at       TEXT NOT NULL,
            document TEXT NOT NULL
        )""",
        "CREATE INDEX check_results_by_app ON check_results (app_id, seq)",
        # District intake links: the token's hash only.
        """CREATE TABLE invites (
            token_hash    TEXT PRIMARY KEY,
            app_id        TEXT NOT NULL,
            vendor        TEXT NOT NULL,
            district_name TEXT NOT NULL,
            scopes        TEXT NOT NULL,
            created       TEXT NOT NULL,
            expires       TEXT NOT NULL,
            spent         TEXT
        )""",
    ),
    3: CONNECTION_TABLES,
    # The per-vendor JWT kill switch: JWTs carry no store id, so they end by issue time.
    4: (
        """CREATE TABLE vendor_auth (
            vendor             TEXT PRIMARY KEY,
            jwt_not_before     TEXT,
            secret_fingerprint TEXT
        )""",
    ),
}

_TOKEN_COLUMNS = "id, vendor, secret_hash, prefix, created, expires, revoked, last_used"

# SQLITE_BUSY and SQLITE_LOCKED (primary result codes, the low byte of extended ones):
# another connection holds the lock.
_BUSY_CODES = frozenset({5, 6})
# Slot writes on the loop's thread between two checkpoints of the WAL (see _inline).
CHECKPOINT_EVERY = 256


def _fast_connection(path: str) -> sqlite3.Connection:
    """The loop thread's connection for slot writes: no lock waits, no own checkpoints."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        # WAL is a property of the file, set by the executor's connections at open.
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            raise sqlite3.OperationalError("not in WAL mode")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        conn.close()
        raise
    return conn


# Float error in the refill arithmetic must not turn "exactly enough" into a tiny wait.
_EPSILON = 1e-9


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


class SqliteStore(SqliteConnections):
    """``Store`` on one sqlite file; any number of processes on one host may share it."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        if not path:
            raise ValueError("sqlite store: empty path")
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orp-sqlite")
        # Both used only on the executor's thread. Token and audit writes are fsynced
        # (synchronous=FULL: a revocation must survive a power cut); limiter writes happen per
        # request and are cheap to lose, so they go through a second connection that skips it.
        self._conn: sqlite3.Connection | None = None
        self._limits: sqlite3.Connection | None = None
        # District slots on the event loop's own thread when the write lock is free (see
        # _inline); checkpointed through the executor every CHECKPOINT_EVERY writes.
        self._fast: sqlite3.Connection | None = None
        self._fast_writes = 0
        self._closed = False

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # autocommit; transactions are explicit (_write)
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL (got {mode})")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if exists is None:
            return 0
        return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # Checked with a read first: a file at the current schema opens (and reopens) while
        # another process holds the write lock.
        if self._schema_version(conn) == SCHEMA_VERSION:
            return
        with _write(conn):
            current = self._schema_version(conn)  # another process may have migrated meanwhile
            if current > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path} has schema version {current}, newer than this proxy's "
                    f"{SCHEMA_VERSION}; upgrade oneroster-proxy"
                )
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
            if current < SCHEMA_VERSION:
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def _ensure_open(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        if self._conn is None or self._limits is None:
            self._drop()
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect("FULL")
            try:
                self._migrate(conn)
                limits = self._connect("NORMAL")
            except BaseException:
                conn.close()
                raise
            self._conn, self._limits = conn, limits
        return self._conn, self._limits

    def _drop(self) -> None:
        for conn in (self._conn, self._limits):
            if conn is not None:
                conn.close()
        self._conn = self._limits = None

    def _call(self, fn: Callable[[sqlite3.Connection, sqlite3.Connection], T]) -> T:
        conn, limits = self._ensure_open()
        try:
            return fn(conn, limits)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            # Reopen on the next call: after an I/O error or a file replaced under us, the old
            # connection may never work again. A busy file is no reason: it keeps working.
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF not in _BUSY_CODES:
                self._drop()
            raise

    async def _run(self, fn: Callable[[sqlite3.Connection, sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("sqlite store used after close()")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite store {self.path} unavailable: {exc}") from exc

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and schema if needed; StoreUnavailable if the path is unusable."""
        await self._run(lambda conn, limits: None)

    def _inline(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run one short limiter write on the loop's thread, if the file's write lock is free
        right now: ``(True, result)``, or ``(False, None)`` and nothing written.

        A district slot is taken and given back on every request to a capped district; through
        the executor each costs a thread hand-off several times the write itself (a WAL append,
        not fsynced). This connection never waits for a lock (``busy_timeout = 0``) and never
        checkpoints on its own (a checkpoint fsyncs): when another process holds the lock, or
        anything fails, the caller goes through the executor, which waits out busy_timeout and
        reports errors as before; every ``CHECKPOINT_EVERY`` writes the executor checkpoints."""
        if self._closed or self._conn is None:
            return False, None
        conn = self._fast
        try:
            if conn is None:
                conn = self._fast = _fast_connection(self.path)
            result = fn(conn)
        except sqlite3.Error:
            return False, None
        self._fast_writes += 1
        if self._fast_writes >= CHECKPOINT_EVERY:
            self._fast_writes = 0
            asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint)
        return True, result

    def _checkpoint(self) -> None:
        # TRUNCATE, not PASSIVE: slot writes keep appending, so a passive checkpoint never
        # catches up and the WAL would only grow; this one waits (busy_timeout) for the
        # in-flight write, then empties the log file.
        with contextlib.suppress(sqlite3.Error):
            if self._limits is not None:
                self._limits.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._drop)
        self._executor.shutdown(wait=False)

    async def ping(self) -> None:
        await self._run(lambda conn, limits: conn.execute("SELECT 1").fetchone())

    # -- tokens -------------------------------------------------------------------------------

    async def add_token(self, record: TokenRecord) -> None:
        row = _token_row(record)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", row)

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

    async def revoke_token(self, token_id: str, at: datetime) -> bool:
        when = _iso(at)

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (when, token_id)
            )
            return cursor.rowcount == 1

        return await self._run(op)

    async def revoke_vendor(self, vendor: str, at: datetime) -> list[str]:
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

    # -- audit --------------------------------------------------------------------------------

    async def add_audit(self, event: AuditEvent) -> None:
        row = (
            _iso(event.at),
            event.action,
            event.interface,
            event.vendor,
            event.token_id,
            json.dumps(event.detail, separators=(",", ":")),
        )

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO audit (at, action, interface, vendor, token_id, detail) "
                "VALUES (?,?,?,?,?,?)",
                row,
            )

        await self._run(op)

    async def list_audit(self, limit: int = 1000) -> list[AuditEvent]:
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> list[AuditEvent]:
            rows = conn.execute(
                "SELECT at, action, interface, vendor, token_id, detail FROM audit "
                "ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
            events = []
            for at, action, interface, vendor, token_id, detail in reversed(rows):
                when = _time(at)
                assert when is not None  # NOT NULL column
                events.append(
                    AuditEvent(
                        at=when,
                        action=action,
                        interface=interface,
                        vendor=vendor,
                        token_id=token_id,
                        detail=json.loads(detail),
                    )
                )
            return events

        return await self._run(op)

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

        done, taken = self._inline(lambda fast: op(fast, fast))
        if done:
            return bool(taken)
        return await self._run(op)

    async def release_slot(self, key: str, holder: str) -> None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            limits.execute("DELETE FROM slots WHERE key = ? AND holder = ?", (key, holder))

        done, _ = self._inline(lambda fast: op(fast, fast))
        if not done:
            await self._run(op)
