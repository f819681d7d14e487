"""The sqlite store's file, its ``-wal`` and ``-shm``, are 0600 and a folder the proxy makes
for it 0700, whatever the umask (docs/configuration.md ``[store] url``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from proxy.store.sqlite import SqliteStore
from tests.store.conftest import record


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_store_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "made" / "by-proxy" / "store.db"
    previous = os.umask(umask)
    try:
        store = SqliteStore(str(path))
        await store.open()
        await store.add_token(record("aaaaaaaaaaaa"))  # the WAL and its index exist now
        try:
            for name in ("store.db", "store.db-wal", "store.db-shm"):
                assert mode(path.with_name(name)) == 0o600, name
            assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
        finally:
            await store.close()
    finally:
        os.umask(previous)


async def test_a_store_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    """A file an earlier version left 0644 is 0600 once opened."""
    path = tmp_path / "store.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    assert mode(path) == 0o600
