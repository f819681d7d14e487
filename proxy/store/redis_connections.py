"""Districts and connections in the Redis store (``ConnectionStore`` of ``base.py``).

docs/commands.md. Layout (``orp:`` is the default prefix):

    orp:district:<name>   hash: the district's fields (absent field = unset)
    orp:districts         sorted set of district names, all scored 0 (ordered by name)
    orp:conn:<appId>      hash: the connection's fields; ``secret`` is the sealed text
    orp:conns             sorted set of every appId, scored 0: pages by ZRANGEBYLEX
    orp:vconns:<vendor>   the same for one vendor's appIds
    orp:dconns:<district> set of the appIds that use a district (removal refuses while any)

Every write is one Lua script, so a refused write changes nothing and replicas never see half
of one; the gateway's read of an uncached appId (``resolve_connection``) is one script too:
one round trip for the connection and its district. Mixed into ``RedisStore``.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import date, datetime
from typing import Any, cast

from proxy.errors import Conflict, NotFound
from proxy.store.base import ConnectionRecord, DistrictRecord
from proxy.store.redis_rows import RedisRole, _us
from proxy.store.redis_rows import _time as _parse_time

_ADD_DISTRICT = """
-- KEYS: district hash, districts index.  ARGV: name, then field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

_UPDATE_DISTRICT = """
-- KEYS: district hash.  ARGV: field/value pairs (created stays as it is)
local created = redis.call('HGET', KEYS[1], 'created')
if not created then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('HSET', KEYS[1], 'created', created)
return 1
"""

_REMOVE_DISTRICT = """
-- KEYS: district hash, districts index, users set.  ARGV: name
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local users = redis.call('SMEMBERS', KEYS[3])
if #users > 0 then
  table.sort(users)
  return {-1, users[1]}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {1}
"""

_ADD_CONNECTION = """
-- KEYS: connection hash, all index, vendor index, district users, district hash
-- ARGV: appId, district must be in the store (1/0), then field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[5]) == 0 then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
"""

_UPDATE_CONNECTION = """
-- KEYS: connection hash.  ARGV: key prefix, appId, then field/value pairs
-- (created and district stay as they are; the vendor index follows a new vendor)
local old = redis.call('HMGET', KEYS[1], 'created', 'district', 'vendor')
if not old[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HSET', KEYS[1], 'created', old[1], 'district', old[2])
local vendor = redis.call('HGET', KEYS[1], 'vendor')
if vendor ~= old[3] then
  redis.call('ZREM', ARGV[1] .. 'vconns:' .. old[3], ARGV[2])
  redis.call('ZADD', ARGV[1] .. 'vconns:' .. vendor, 0, ARGV[2])
end
return 1
"""

_REMOVE_CONNECTION = """
-- KEYS: connection hash, all index.  ARGV: key prefix, appId
local old = redis.call('HMGET', KEYS[1], 'vendor', 'district')
if not old[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', ARGV[1] .. 'vconns:' .. old[1], ARGV[2])
redis.call('SREM', ARGV[1] .. 'dconns:' .. old[2], ARGV[2])
return 1
"""

_RESOLVE = """
-- KEYS: connection hash.  ARGV: key prefix
local conn = redis.call('HGETALL', KEYS[1])
if #conn == 0 then return {} end
local district = redis.call('HGET', KEYS[1], 'district')
return {conn, redis.call('HGETALL', ARGV[1] .. 'district:' .. district)}
"""


def _time(text: str) -> datetime:
    value = _parse_time(text)
    assert value is not None
    return value


def _flat(fields: dict[str, str | int]) -> list[str | int]:
    return [item for pair in fields.items() for item in pair]


#: The district fields a hash holds only when set (the record's fields that default to None).
_OPTIONAL = tuple(f.name for f in dataclass_fields(DistrictRecord) if f.default is None)


def district_fields(r: DistrictRecord) -> dict[str, str | int]:
    fields: dict[str, str | int] = {
        "base_url": r.base_url,
        "auth": r.auth,
        "signature_method": r.signature_method,
        "vendor_authorization": int(r.vendor_authorization),
        "versions": ",".join(r.versions),
        "created": _us(r.created),
        "updated": _us(r.updated),
    }
    for name in _OPTIONAL:
        value = getattr(r, name)
        if value is not None:
            fields[name] = value
    return fields


def _district(name: str, f: dict[str, str]) -> DistrictRecord:
    return DistrictRecord(
        name=name,
        base_url=f["base_url"],
        auth=f["auth"],
        signature_method=f["signature_method"],
        token_url=f.get("token_url"),
        vendor_authorization=f["vendor_authorization"] == "1",
        versions=tuple(v for v in f["versions"].split(",") if v),
        max_connections=int(f["max_connections"]) if "max_connections" in f else None,
        max_wait=f.get("max_wait"),
        rate_limit=f.get("rate_limit"),
        timezone=f.get("timezone"),
        windows=f.get("windows"),
        pauses=f.get("pauses"),
        created=_time(f["created"]),
        updated=_time(f["updated"]),
    )


def connection_fields(r: ConnectionRecord) -> dict[str, str | int]:
    fields: dict[str, str | int] = {
        "vendor": r.vendor,
        "district": r.district,
        "key": r.key,
        "secret": r.secret,
        "scopes": ",".join(r.scopes),
        "enabled": int(r.enabled),
        "created": _us(r.created),
        "updated": _us(r.updated),
        "source": r.source,
        "changes": int(r.changes),
        "changes_at": r.changes_at,
        "max_deletions": r.max_deletions,
    }
    if r.expires is not None:
        fields["expires"] = r.expires.isoformat()
    return fields


def _connection(app_id: str, f: dict[str, str]) -> ConnectionRecord:
    return ConnectionRecord(
        app_id=app_id,
        vendor=f["vendor"],
        district=f["district"],
        key=f["key"],
        secret=f["secret"],
        scopes=tuple(s for s in f["scopes"].split(",") if s),
        enabled=f["enabled"] == "1",
        expires=date.fromisoformat(f["expires"]) if "expires" in f else None,
        created=_time(f["created"]),
        updated=_time(f["updated"]),
        source=f.get("source", "store"),
        changes=f.get("changes") == "1",
        changes_at=f.get("changes_at", "02:00"),
        max_deletions=f.get("max_deletions", "10%"),
    )


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisConnections(RedisRole):
    """The ``ConnectionStore`` methods of ``RedisStore``."""

    def _register_connection_scripts(self) -> None:
        register = self._client.register_script
        self._add_district = register(_ADD_DISTRICT)
        self._update_district = register(_UPDATE_DISTRICT)
        self._remove_district = register(_REMOVE_DISTRICT)
        self._add_connection = register(_ADD_CONNECTION)
        self._update_connection = register(_UPDATE_CONNECTION)
        self._remove_connection = register(_REMOVE_CONNECTION)
        self._resolve = register(_RESOLVE)

    # -- districts ------------------------------------------------------------------------------

    async def add_district(self, record: DistrictRecord) -> None:
        keys = [self._key("district", record.name), self._key("districts")]
        with self._unavailable("add_district"):
            added = await self._add_district(
                keys=keys, args=[record.name, *_flat(district_fields(record))]
            )
        if not added:
            raise Conflict(f'district "{record.name}" already exists')

    async def get_district(self, name: str) -> DistrictRecord | None:
        with self._unavailable("get_district"):
            fields = cast("dict[str, str]", await self._client.hgetall(self._key("district", name)))
        return _district(name, fields) if fields else None

    async def list_districts(self) -> list[DistrictRecord]:
        with self._unavailable("list_districts"):
            names = cast("list[str]", await self._client.zrange(self._key("districts"), 0, -1))
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._key("district", name))
            rows = await pipe.execute() if names else []
        return [_district(n, f) for n, f in zip(names, rows, strict=True) if f]

    async def update_district(self, record: DistrictRecord) -> None:
        fields = district_fields(record)
        del fields["created"]
        with self._unavailable("update_district"):
            done = await self._update_district(
                keys=[self._key("district", record.name)], args=_flat(fields)
            )
        if not done:
            raise NotFound(f'no district "{record.name}" in the store')

    async def remove_district(self, name: str) -> None:
        keys = [self._key("district", name), self._key("districts"), self._key("dconns", name)]
        with self._unavailable("remove_district"):
            result = cast("list[Any]", await self._remove_district(keys=keys, args=[name]))
        if result[0] == 0:
            raise NotFound(f'no district "{name}" in the store')
        if result[0] == -1:
            raise Conflict(f'district "{name}" is in use by connection {result[1]}')

    # -- connections ----------------------------------------------------------------------------

    async def add_connection(self, record: ConnectionRecord, *, district_in_store: bool) -> None:
        keys = [
            self._key("conn", record.app_id),
            self._key("conns"),
            self._key("vconns", record.vendor),
            self._key("dconns", record.district),
            self._key("district", record.district),
        ]
        args = [record.app_id, int(district_in_store), *_flat(connection_fields(record))]
        with self._unavailable("add_connection"):
            added = await self._add_connection(keys=keys, args=args)
        if added == 0:
            raise Conflict(f"connection {record.app_id} already exists")
        if added == -1:
            raise NotFound(f'no district "{record.district}" in the store')

    async def get_connection(self, app_id: str) -> ConnectionRecord | None:
        with self._unavailable("get_connection"):
            fields = cast("dict[str, str]", await self._client.hgetall(self._key("conn", app_id)))
        return _connection(app_id, fields) if fields else None

    async def resolve_connection(
        self, app_id: str
    ) -> tuple[ConnectionRecord, DistrictRecord | None] | None:
        with self._unavailable("resolve_connection"):
            found = cast(
                "list[list[str]]",
                await self._resolve(keys=[self._key("conn", app_id)], args=[self._prefix]),
            )
        if not found:
            return None
        conn = _connection(app_id, _pairs(found[0]))
        district = _pairs(found[1])
        return conn, (_district(conn.district, district) if district else None)

    async def list_connections(
        self, *, vendor: str | None = None, after: str = "", limit: int = 500
    ) -> list[ConnectionRecord]:
        if limit <= 0:
            return []
        index = self._key("conns") if vendor is None else self._key("vconns", vendor)
        start = f"({after}" if after else "-"
        with self._unavailable("list_connections"):
            ids = cast(
                "list[str]",
                await self._client.zrangebylex(index, start, "+", start=0, num=limit),
            )
            pipe = self._client.pipeline(transaction=False)
            for app_id in ids:
                pipe.hgetall(self._key("conn", app_id))
            rows = await pipe.execute() if ids else []
        return [_connection(i, f) for i, f in zip(ids, rows, strict=True) if f]

    async def update_connection(self, record: ConnectionRecord) -> None:
        fields = connection_fields(record)
        del fields["created"], fields["district"]
        with self._unavailable("update_connection"):
            done = await self._update_connection(
                keys=[self._key("conn", record.app_id)],
                args=[self._prefix, record.app_id, *_flat(fields)],
            )
        if not done:
            raise NotFound(f"no connection {record.app_id} in the store")

    async def remove_connection(self, app_id: str) -> None:
        with self._unavailable("remove_connection"):
            done = await self._remove_connection(
                keys=[self._key("conn", app_id), self._key("conns")],
                args=[self._prefix, app_id],
            )
        if not done:
            raise NotFound(f"no connection {app_id} in the store")
        with self._unavailable("remove_connection"):
            # Its check history goes with it: an appId added again starts with no last check.
            await self._client.delete(self._key("checks", app_id))
