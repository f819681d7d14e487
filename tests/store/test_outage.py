"""Store outages become ``StoreUnavailable`` (a 503), quickly, never a redis-py or sqlite3
exception, and the same store object works again once the backend is back
(docs/configuration.md)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.errors import StoreUnavailable
from proxy.store.base import AuditEvent
from proxy.store.redis import RedisStore
from proxy.store.sqlite import SCHEMA_VERSION, SqliteStore
from proxy.tokens import new_token
from tests.redis_server import RedisServer, require_redis_server

NOW = datetime(2026, 3, 1, tzinfo=UTC)


READS = ("ping", "get_token", "list_tokens", "count_active", "list_audit")


def every_operation(store: RedisStore | SqliteStore) -> dict[str, Callable[[], Awaitable[object]]]:
    record = new_token("acme").record
    return {
        "ping": store.ping,
        "add_token": lambda: store.add_token(record),
        "get_token": lambda: store.get_token(record.id),
        "list_tokens": store.list_tokens,
        "revoke_token": lambda: store.revoke_token(record.id, NOW),
        "revoke_vendor": lambda: store.revoke_vendor("acme", NOW),
        "expire_vendor": lambda: store.expire_vendor("acme", NOW, keep=record.id),
        "touch": lambda: store.touch({record.id: NOW}),
        "count_active": lambda: store.count_active(NOW),
        "add_audit": lambda: store.add_audit(
            AuditEvent(at=NOW, action="config.reload", interface="signal")
        ),
        "list_audit": store.list_audit,
        "take_tokens": lambda: store.take_tokens("k", 1.0, 1.0),
        "acquire_slot": lambda: store.acquire_slot("k", 1, "h", 1.0),
        "release_slot": lambda: store.release_slot("k", "h"),
    }


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of the test's own, to kill and restart without disturbing the others."""
    require_redis_server()
    with RedisServer() as server:
        yield server


async def test_redis_killed_then_back_on_the_same_port(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url)
    await store.open()
    first = new_token("acme").record
    await store.add_token(first)
    assert await store.get_token(first.id) == first

    own_redis.stop()
    for operation in every_operation(store).values():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await operation()
        assert time.monotonic() - started < 3.0
        assert caught.value.status == 503
        assert f"127.0.0.1:{own_redis.port}" in caught.value.description

    own_redis.start()  # empty: nothing was persisted
    await store.ping()
    again = new_token("acme").record
    await store.add_token(again)
    assert await store.get_token(again.id) == again
    assert await store.take_tokens("k", 1.0, 1.0) == 0.0
    await store.close()


async def test_redis_that_hangs_times_out_and_recovers(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, timeout=0.3)
    await store.ping()
    own_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="Timeout"):
            await store.get_token("abcdefghijkl")
        assert time.monotonic() - started < 2.0
    finally:
        own_redis.resume()
    assert await store.get_token("abcdefghijkl") is None
    await store.close()


async def test_redis_down_at_open_is_not_fatal(own_redis: RedisServer) -> None:
    """A proxy starts while Redis is down and works once it is back."""
    own_redis.stop()
    store = RedisStore(own_redis.url)
    await store.open()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    own_redis.start()
    await store.ping()
    await store.close()


async def test_redis_password_never_appears_in_errors() -> None:
    require_redis_server()
    password = "s3cret-Pa55word"
    with RedisServer(extra_args=("--requirepass", password)) as server:
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        good = RedisStore(url)
        await good.ping()
        await good.close()

        wrong = RedisStore(f"redis://:wrong-{password}@127.0.0.1:{server.port}/0")
        with pytest.raises(StoreUnavailable) as caught:
            await wrong.ping()
        assert password not in str(caught.value)
        assert caught.value.description.startswith(
            f"redis store redis://127.0.0.1:{server.port}/0 "
        )
        await wrong.close()

        server.stop()
        down = RedisStore(url)
        with pytest.raises(StoreUnavailable) as caught:
            await down.get_token("abcdefghijkl")
        assert password not in str(caught.value)
        await down.close()


async def test_redis_audit_is_capped(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, audit_max=5)
    for i in range(8):
        await store.add_audit(
            AuditEvent(at=NOW, action="token.issue", interface="cli", detail={"n": i})
        )
    assert [e.detail["n"] for e in await store.list_audit()] == [3, 4, 5, 6, 7]
    await store.close()


async def test_sqlite_path_that_cannot_be_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    store = SqliteStore(str(blocker / "store.db"))
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert str(blocker / "store.db") in caught.value.description
    with pytest.raises(StoreUnavailable):
        await store.get_token("abcdefghijkl")
    await store.close()

    directory = SqliteStore(str(tmp_path))
    with pytest.raises(StoreUnavailable):
        await directory.open()
    await directory.close()


async def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite" * 100)
    store = SqliteStore(str(path))
    with pytest.raises(StoreUnavailable, match="not a database"):
        await store.ping()
    await store.close()


async def test_sqlite_locked_by_another_writer_then_free(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    store = SqliteStore(path, busy_timeout=0.1)
    await store.open()
    kept = new_token("acme").record
    await store.add_token(kept)

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for name, operation in every_operation(store).items():
            if name in READS:
                await operation()  # WAL: readers are not blocked by a writer
                continue
            with pytest.raises(StoreUnavailable, match="locked"):
                await operation()
        assert await store.get_token(kept.id) == kept
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    later = new_token("acme").record
    await store.add_token(later)
    assert await store.get_token(later.id) == later
    await store.close()


async def test_sqlite_waits_for_a_short_lock_instead_of_failing(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    store = SqliteStore(path, busy_timeout=5.0)
    await store.open()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, holder.execute, "COMMIT")
    record = new_token("acme").record
    await store.add_token(record)  # waits out the other writer
    assert await store.get_token(record.id) == record
    holder.close()
    await store.close()


async def test_sqlite_from_a_newer_proxy_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    async with SqliteStore(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    store = SqliteStore(path)
    with pytest.raises(StoreUnavailable, match="upgrade oneroster-proxy"):
        await store.open()
    await store.close()


async def test_sqlite_file_is_wal_versioned_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "store.db"  # parent directories are made
    record = new_token("acme").record
    async with SqliteStore(str(path)) as store:
        await store.add_token(record)
    async with SqliteStore(str(path)) as store:
        assert await store.get_token(record.id) == record
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM tokens WHERE vendor = ? ORDER BY created, id",
            ("acme",),
        ).fetchall()
        assert "tokens_by_vendor" in str(plan) and "TEMP B-TREE" not in str(plan)


async def test_sqlite_used_after_close_is_a_programming_error(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "store.db"))
    await store.open()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.ping()
