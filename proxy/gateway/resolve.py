"""Store connections at run time: an appId the TOML file does not define, read from the store.

docs/commands.md: a change made through any interface, on any replica,
takes effect everywhere within ``[store] cache_ttl``, with no reload. The gateway looks an
appId up in the TOML connections first (a dictionary look-up), then here:

* A look-up is cached for ``cache_ttl``, like a token's (``proxy.gateway.inbound``): the hot path
does
  no I/O for an appId seen recently. An uncached appId costs one store read
  (``resolve_connection``: the connection and its district in one round trip), never a scan,
  and concurrent misses for one appId share it. Only appIds that requests name are cached, so
  memory follows the connections in use, not the connections in the store.
* A record read again unchanged keeps its ``Connection`` (signer and OAuth2 token source
  included). A changed one gets a new ``Connection``; the OAuth2 token source of its old
  credentials is closed, so the old district token is never sent again.
* Store down: a cached connection keeps serving past ``cache_ttl`` (its entry is renewed
  until the store answers); an uncached appId is 503 with ``Retry-After``, as for tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from proxy.config import Config, ConnectionConfig, DistrictConfig
from proxy.connections.managed import binding, district_config
from proxy.errors import ConfigError, CredentialsUnusable, ServiceUnavailable, StoreUnavailable
from proxy.gateway.runtime import Connection, Runtime, TokenSourceFactory, make_connection
from proxy.signing.oauth2 import OAuth2TokenSource
from proxy.store.base import ConnectionRecord, ConnectionStore, DistrictRecord
from proxy.store.crypto import Binding, SecretBox, SecretKeyError
from proxy.tasks import TaskSet

log = logging.getLogger("oneroster_proxy")

#: At most this many appIds cached (served ones and unknown ones); past it the cache restarts.
MAX_CACHED = 100_000


@dataclass(slots=True)
class _Entry:
    fresh_until: float  # monotonic
    version: tuple[object, ...] | None  # what the Connection was built from; None: unknown
    connection: Connection | None


class StoreConnections:
    """The store half of the appId look-up; one per app, kept across config reloads."""

    def __init__(
        self,
        store: ConnectionStore,
        cache_ttl: float,
        token_source_factory: TokenSourceFactory,
        *,
        secret_box: Callable[[], SecretBox],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = cache_ttl
        self._factory = token_source_factory
        self._box = secret_box
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Future[Connection | None]] = {}
        self._sources: dict[tuple[str, ...], OAuth2TokenSource] = {}
        self._closing = TaskSet()
        self._upstream_timeout = 30.0
        self.reads = 0  # store reads made (bench/ and tests count them)

    def forget(self, app_id: str | None = None) -> None:
        """Make the cached look-up of ``app_id`` (or of all) stale: this process changed it, or
        reloaded its config. The next request reads the store; while the store is down, a
        stale entry still serves."""
        entries = self._cache.values() if app_id is None else [self._cache.get(app_id)]
        for entry in entries:
            if entry is not None:
                entry.fresh_until = 0.0

    async def get(self, app_id: str, runtime: Runtime) -> Connection | None:
        entry = self._cache.get(app_id)
        if entry is not None and self._clock() < entry.fresh_until:
            return entry.connection
        pending = self._pending.get(app_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._pending[app_id] = future
        try:
            connection = await self._load(app_id, runtime, entry)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # waiters re-raise it themselves
            else:
                future.cancel()
            raise
        else:
            future.set_result(connection)
            return connection
        finally:
            del self._pending[app_id]

    async def _load(self, app_id: str, runtime: Runtime, entry: _Entry | None) -> Connection | None:
        try:
            self.reads += 1
            found = await self.store.resolve_connection(app_id)
        except StoreUnavailable:
            if entry is not None:
                # docs/http-api.md: cached connections keep serving while the store is down.
                entry.fresh_until = self._clock() + self.ttl
                return entry.connection
            raise
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        if found is None:
            self._retire(entry)
            self._cache[app_id] = _Entry(self._clock() + self.ttl, None, None)
            return None
        record, district_record = found
        version = _version(record, district_record, runtime)
        if entry is not None and entry.version == version:
            entry.fresh_until = self._clock() + self.ttl
            return entry.connection
        connection = self._build(record, district_record, runtime)
        self._retire(entry, keep=connection)
        self._cache[app_id] = _Entry(self._clock() + self.ttl, version, connection)
        return connection

    def _build(
        self, record: ConnectionRecord, district_record: DistrictRecord | None, runtime: Runtime
    ) -> Connection | None:
        config = runtime.config
        self._upstream_timeout = config.server.upstream_timeout
        vendor = config.vendors.get(record.vendor)
        district: DistrictConfig | None = config.districts.get(record.district)
        in_config = district is not None
        if district is None and district_record is not None:
            try:
                district = district_config(district_record)
            except (ConfigError, ValueError) as err:
                log.error("store district %s does not validate: %s", record.district, err)
                district = None
        if vendor is None or district is None:
            # A vendor removed from the file, or a district gone: nothing to serve (404).
            return None
        where = binding(record.app_id, record.key, record.district, in_config, district_record)
        assert where is not None  # the district was found above
        conn = self._connection_config(record, where)
        return make_connection(conn, district, vendor, self._source_for)

    def _connection_config(self, record: ConnectionRecord, where: Binding) -> ConnectionConfig:
        try:
            # SECURITY: opened only for the district it was sealed for (docs/http-api.md):
            # a record pointed elsewhere in the store alone does not decrypt.
            secret = self._box().open(where, record.secret)
        except SecretKeyError as exc:
            log.error(
                "%s",
                exc.description,
                extra={"fields": {"event": "store.secret", "app": record.app_id}},
            )
            if exc.reenter:
                raise CredentialsUnusable(
                    f"connection {record.app_id}: credentials must be entered again"
                ) from exc
            raise ServiceUnavailable(
                "this connection's credentials cannot be read; try again later", retry_after=30
            ) from exc
        return record_config(record, secret)

    def _source_for(
        self,
        key: tuple[str, ...],
        district: DistrictConfig,
        conn: ConnectionConfig,
        scopes: list[str],
    ) -> OAuth2TokenSource:
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = self._factory(
                district, conn, scopes, self._upstream_timeout
            )
        return source

    def _retire(self, entry: _Entry | None, keep: Connection | None = None) -> None:
        """The replaced connection's OAuth2 token source goes, unless another uses it."""
        old = entry.connection if entry is not None else None
        if old is None or old.token_source is None:
            return
        if keep is not None and keep.token_source is old.token_source:
            return
        for other in self._cache.values():
            if other is not entry and other.connection is not None:
                if other.connection.token_source is old.token_source:
                    return
        for key, source in list(self._sources.items()):
            if source is old.token_source:
                del self._sources[key]
        self._closing.spawn(old.token_source.close())

    async def close(self) -> None:
        await self._closing.wait()
        for source in self._sources.values():
            await source.close()
        self._sources.clear()
        self._cache.clear()


def with_store_connection(
    config: Config,
    record: ConnectionRecord,
    district_record: DistrictRecord | None,
    box: SecretBox,
) -> Config | None:
    """``config`` with store connection ``record`` (and its store district) added, as
    ``check`` takes it: secret opened (SecretKeyError naming ``store.secret_keys`` if it
    cannot be). None when its vendor or district is gone (the gateway answers 404 for it)."""
    district = config.districts.get(record.district)
    in_config = district is not None
    if district is None and district_record is not None:
        district = district_config(district_record)
    if district is None or record.vendor not in config.vendors:
        return None
    where = binding(record.app_id, record.key, record.district, in_config, district_record)
    assert where is not None  # the district was found above
    conn = record_config(record, box.open(where, record.secret))
    return replace(
        config,
        districts={**config.districts, district.name: district},
        connections={**config.connections, record.app_id: conn},
    )


def _version(
    record: ConnectionRecord, district: DistrictRecord | None, runtime: Runtime
) -> tuple[object, ...]:
    """What a built Connection depends on: a change in any of it builds a new one."""
    vendor = runtime.config.vendors.get(record.vendor)
    return (
        record,
        district,
        runtime.config.districts.get(record.district),
        vendor,
    )


def record_config(record: ConnectionRecord, secret: str) -> ConnectionConfig:
    """The runtime connection of a store record (validated when written), ``secret`` opened."""
    conn = ConnectionConfig(
        app_id=record.app_id,
        vendor=record.vendor,
        district=record.district,
        key=record.key,
        secret=secret,
        scopes=frozenset(record.scopes),
        enabled=record.enabled,
        expires=record.expires,
        changes=record.changes,
        changes_at=record.changes_at,
        max_deletions=record.max_deletions,
        stored=True,
    )
    if record.drop_fields is not None:
        conn = replace(conn, drop_fields=record.drop_fields)
    return conn
