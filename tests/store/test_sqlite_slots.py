"""sqlite district slots on the event loop's thread (``SqliteStore._inline``): taken there
while the file's write lock is free, through the executor (which waits for the lock) while
another process holds it, and the WAL checkpointed so it stays bounded."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from proxy.store import sqlite as sqlite_store
from proxy.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path):
    opened = SqliteStore(str(tmp_path / "store.db"))
    await opened.open()
    yield opened
    await opened.close()


async def test_slots_are_taken_inline_and_wait_for_a_lock_held_elsewhere(tmp_path: Path):
    store = SqliteStore(str(tmp_path / "store.db"))
    await store.open()
    try:
        assert await store.acquire_slot("district:d", 2, "a", 30)
        assert store._fast is not None  # the loop thread's connection did it
        # Another process (here: another connection) holds the write lock for 300 ms.
        other = sqlite3.connect(
            str(tmp_path / "store.db"), isolation_level=None, check_same_thread=False
        )
        other.execute("BEGIN IMMEDIATE")
        released = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
        released.start()
        try:
            # Not refused and not lost: the executor waits out the lock.
            assert await store.acquire_slot("district:d", 2, "b", 30)
            assert not await store.acquire_slot("district:d", 2, "c", 30)
        finally:
            released.join()
            other.close()
        await store.release_slot("district:d", "a")
        assert await store.acquire_slot("district:d", 2, "c", 30)
    finally:
        await store.close()


async def test_the_wal_is_checkpointed_while_slots_churn(store: SqliteStore, monkeypatch):
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 50)
    for i in range(3000):
        assert await store.acquire_slot("district:d", 10, f"h{i}", 30)
        await store.release_slot("district:d", f"h{i}")
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the checkpoint run
    await asyncio.sleep(0.2)
    # 6,000 writes of a page or more each: without checkpoints the WAL would be >20 MB.
    size = await asyncio.to_thread(os.path.getsize, f"{store.path}-wal")
    assert size < 4 * 2**20


async def test_slots_left_by_dead_holders_are_deleted_while_slots_churn(
    store: SqliteStore, monkeypatch
):
    # A holder that died keeps its row until it expires; a district below its limit never
    # takes acquire_slot's full path (which deletes expired rows), so the checkpoint does.
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 20)
    for i in range(5):
        assert await store.acquire_slot("district:d", 10, f"dead{i}", 0.05)
    await asyncio.sleep(0.1)
    for i in range(40):
        assert await store.acquire_slot("district:d", 10, f"h{i}", 30)
        await store.release_slot("district:d", f"h{i}")
        await asyncio.sleep(0)  # let the checkpoint run
    await asyncio.sleep(0.2)
    with sqlite3.connect(store.path) as conn:
        holders = [h for (h,) in conn.execute("SELECT holder FROM slots")]
    assert holders == []
