"""Fixtures of the store conformance suites (one per role: ``test_tokens.py``,
``test_connections.py``, ``test_audit.py``, ``test_limits.py``): each test runs once on a sqlite
file in ``tmp_path`` and once on a real ``redis-server`` (started once per session on a free
loopback port, emptied before every test)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from proxy.store.base import Store, TokenRecord
from proxy.store.redis import RedisStore
from proxy.store.sqlite import SqliteStore
from proxy.store.sqlite_tokens import _TOKEN_COLUMNS, _token_row
from proxy.tokens import hash_secret
from tests.redis_server import RedisServer, require_redis_server

T0 = datetime(2026, 3, 1, 12, 0, 0, 123457, tzinfo=UTC)
SECOND = timedelta(seconds=1)
ROOT = Path(__file__).resolve().parents[2]


def record(
    token_id: str, vendor: str = "acme", created: datetime = T0, **fields: object
) -> TokenRecord:
    assert len(token_id) == 12
    return TokenRecord(
        id=token_id,
        vendor=vendor,
        secret_hash=hash_secret(token_id),
        prefix=f"orp_{token_id}_abcd",
        created=created,
        **fields,  # type: ignore[arg-type]
    )


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
        # The layout of RedisStore's add-token script, in bulk and in raw RESP over a socket
        # (like ``redis-cli --pipe``): redis-py spends ~80 µs per pipelined command, seconds
        # for 100,000 tokens. One HSET per token, one ZADD per index with every member.
        indexes: dict[str, list[str | int]] = {}
        commands = []
        for record in records:
            fields = store._token_fields(record)
            commands.append(_resp("HSET", store._key("token", record.id), *_pairs(fields)))
            for index in (store._key("tokens"), store._key("vendor", record.vendor)):
                indexes.setdefault(index, []).extend((fields["created"], record.id))
            indexes.setdefault(store._key("active", record.vendor), []).extend(
                (store._life_end(fields), record.id)
            )
        for index, members in indexes.items():
            commands.append(_resp("ZADD", index, *members))
        commands.append(_resp("SADD", store._key("vendors"), *{r.vendor for r in records}))
        url = urlsplit(self.target)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            # Replies off: reading 100,000 of them costs more than sending the commands. A
            # command that failed shows as missing data in the test's own assertions.
            writer.write(_resp("CLIENT", "REPLY", "OFF"))
            writer.write(b"".join(commands))
            writer.write(_resp("CLIENT", "REPLY", "ON"))
            await writer.drain()
            assert await reader.readline() == b"+OK\r\n"
        finally:
            writer.close()
            await writer.wait_closed()


def _pairs(fields: dict[str, str | int]) -> list[str | int]:
    return [item for pair in fields.items() for item in pair]


def _resp(*args: str | int) -> bytes:
    # Lengths are counted in characters: the test data is ASCII.
    items = [str(arg) for arg in args]
    return (f"*{len(items)}\r\n" + "".join(f"${len(i)}\r\n{i}\r\n" for i in items)).encode("ascii")


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
