"""Fixtures of the store conformance suite: each test runs once on a sqlite file in
``tmp_path`` and once on a real ``redis-server`` (started once per session on a free loopback
port, emptied before every test)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from proxy.store.base import Store, TokenRecord
from proxy.store.redis import RedisStore
from proxy.store.sqlite import _TOKEN_COLUMNS, SqliteStore, _token_row
from tests.redis_server import RedisServer, require_redis_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer() as server:
        yield server


@dataclass
class Backend:
    """How to reach one store's data: ``make()`` gives another instance on the same data,
    as a second process or replica would have."""

    name: str
    target: str  # the sqlite path or the redis URL

    def make(self) -> Store:
        if self.name == "sqlite":
            return SqliteStore(self.target)
        return RedisStore(self.target)

    async def bulk_add(self, store: Store, records: Sequence[TokenRecord]) -> None:
        """Test-only fast insert of many tokens, through each backend's own row format."""
        if isinstance(store, SqliteStore):
            with sqlite3.connect(store.path) as conn:
                conn.executemany(
                    f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                    [_token_row(record) for record in records],
                )
            return
        assert isinstance(store, RedisStore)
        for start in range(0, len(records), 10_000):
            pipe = store._client.pipeline(transaction=False)
            for record in records[start : start + 10_000]:
                keys, args = store._add_token_call(record)
                await store._add_token(keys=keys, args=args, client=pipe)
            await pipe.execute()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "store.db"))
    server: RedisServer = request.getfixturevalue("redis_server")
    with redis.Redis.from_url(server.url) as client:
        client.flushall()
    return Backend("redis", server.url)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    instance = backend.make()
    await instance.open()
    yield instance
    await instance.close()
