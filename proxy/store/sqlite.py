"""The embedded store: one sqlite file shared by the running proxy and the CLI.

This module holds the file (connections, migrations, the store's one thread) and the audit
trail; each other role has its own module (``sqlite_tokens``, ``sqlite_connections``,
``sqlite_checks``, ``sqlite_limits``), mixed into ``SqliteStore``.

docs/configuration.md (``[store] url = "sqlite:///var/lib/oneroster-proxy/store.db"``, the default)
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
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from proxy.errors import StoreUnavailable
from proxy.store.base import (
    AuditEvent,
)
from proxy.store.sqlite_checks import SqliteChecks
from proxy.store.sqlite_connections import COURTESY_COLUMNS, SqliteConnections
from proxy.store.sqlite_connections import TABLES as CONNECTION_TABLES
from proxy.store.sqlite_connections import VERSIONS as CONNECTION_VERSIONS
from proxy.store.sqlite_intake import SqliteIntake
from proxy.store.sqlite_ledger import SqliteLedger, ensure_sharing_schema
from proxy.store.sqlite_limits import SqliteLimits
from proxy.store.sqlite_rows import _audit, _time, _write
from proxy.store.sqlite_sessions import TABLES as SESSION_TABLES
from proxy.store.sqlite_sessions import SqliteSessions
from proxy.store.sqlite_tokens import SqliteTokens

T = TypeVar("T")

SCHEMA_VERSION = 7

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
    # A district's time zone, peak-hour windows and pauses (docs/configuration.md).
    5: COURTESY_COLUMNS,
    # Compare-and-set: every write of a district or connection names the version it read.
    6: CONNECTION_VERSIONS,
    # Console sessions, so that a sign-out holds on every process and across restarts.
    7: SESSION_TABLES,
}

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


def _private_file(path: str) -> None:
    """Create the store file 0600 (and each folder it needs 0700), whatever the umask.

    SECURITY: the file holds token hashes, sealed secrets and the audit trail. sqlite creates
    the ``-wal`` and ``-shm`` files with the main file's permissions (docs/configuration.md),
    so making the main file private before sqlite opens it makes all three private. A file
    that exists already keeps its owner and loses any group or other access."""
    if path == ":memory:" or path.startswith("file:"):
        return
    parent = Path(path).parent
    missing = []
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(OSError):
                if os.stat(name).st_mode & 0o077:
                    os.chmod(name, 0o600)
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class SqliteStore(
    SqliteTokens,
    SqliteConnections,
    SqliteChecks,
    SqliteLimits,
    SqliteIntake,
    SqliteSessions,
    SqliteLedger,
):
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
            _private_file(self.path)
            conn = self._connect("FULL")
            try:
                self._migrate(conn)
                ensure_sharing_schema(conn)
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
                # Slots of holders that died holding them: acquire_slot's one-statement path
                # only counts unexpired rows and never deletes, so they go here.
                self._limits.execute("DELETE FROM slots WHERE expires <= ?", (time.time(),))
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

    # -- audit --------------------------------------------------------------------------------

    async def add_audit(self, event: AuditEvent) -> None:
        def op(conn: sqlite3.Connection, limits: sqlite3.Connection) -> None:
            _audit(conn, event)

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
