"""Districts and connections in the Redis store (``ConnectionStore`` of ``base.py``).

docs/commands.md. Layout (``orp:`` is the default prefix):

    orp:district:<name>   hash: the district's fields (absent field = unset)
    orp:districts         sorted set of district names, all scored 0 (ordered by name)
    orp:conn:<appId>      hash: the connection's fields; ``secret`` is the sealed text
    orp:conns             sorted set of every appId, scored 0: pages by ZRANGEBYLEX
    orp:vconns:<vendor>   the same for one vendor's appIds
    orp:dconns:<district> set of the appIds that use a district (removal refuses while any)

Every write is one Lua script, so a refused write changes nothing and replicas never see half
of one, and it keeps its audit event in the same script (``redis_rows.audited``); an update
names the ``version`` it read and changes nothing if the record moved on (``Stale``). The
gateway's read of an uncached appId (``resolve_connection``) is one script too:
one round trip for the connection and its district. Mixed into ``RedisStore``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from datetime import date, datetime
from typing import Any, cast

from proxy.errors import Conflict, NotFound, Stale
from proxy.store.base import AuditEvent, ConnectionRecord, DistrictRecord
from proxy.store.redis_rows import RedisRole, _us, audited
from proxy.store.redis_rows import _time as _parse_time

_ADD_DISTRICT = audited("""
-- KEYS: district hash, districts index.  ARGV: name, then field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
audit()
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
""")

_UPDATE_DISTRICT = audited("""
-- KEYS: district hash, district users.  ARGV: key prefix, version read, updated, n (-1: no
-- re-seal), n triples (appId, version read, sealed secret), then field/value pairs
-- (created stays as it is)
local cur = redis.call('HMGET', KEYS[1], 'created', 'version')
if not cur[1] then return 0 end
local version = tonumber(cur[2]) or 0
if version ~= tonumber(ARGV[2]) then return -1 end
local n = tonumber(ARGV[4])
local at = 5
if n >= 0 then
  local users = redis.call('SMEMBERS', KEYS[2])
  if #users ~= n then return -2 end
  local want = {}
  for i = 0, n - 1 do want[ARGV[at + 3 * i]] = tonumber(ARGV[at + 3 * i + 1]) end
  for _, app in ipairs(users) do
    local seen = tonumber(redis.call('HGET', ARGV[1] .. 'conn:' .. app, 'version')) or 0
    if want[app] ~= seen then return -2 end
  end
end
audit()
if n > 0 then
  for i = 0, n - 1 do
    local conn = ARGV[1] .. 'conn:' .. ARGV[at + 3 * i]
    redis.call('HSET', conn, 'secret', ARGV[at + 3 * i + 2], 'updated', ARGV[3])
    redis.call('HINCRBY', conn, 'version', 1)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, at + 3 * math.max(n, 0)))
redis.call('HSET', KEYS[1], 'created', cur[1], 'version', version + 1)
return 1
""")

_REMOVE_DISTRICT = audited("""
-- KEYS: district hash, districts index, users set.  ARGV: name
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local users = redis.call('SMEMBERS', KEYS[3])
if #users > 0 then
  table.sort(users)
  return {-1, users[1]}
end
audit()
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {1}
""")

_ADD_CONNECTION = audited("""
-- KEYS: connection hash, all index, vendor index, district users, district hash
-- ARGV: appId, district must be in the store (1/0), then field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[5]) == 0 then return -1 end
audit()
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
""")

_UPDATE_CONNECTION = audited("""
-- KEYS: connection hash.  ARGV: key prefix, appId, version read, then field/value pairs
-- (created and district stay as they are; the vendor index follows a new vendor)
local old = redis.call('HMGET', KEYS[1], 'created', 'district', 'vendor', 'version')
if not old[1] then return 0 end
local version = tonumber(old[4]) or 0
if version ~= tonumber(ARGV[3]) then return -1 end
audit()
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[1], 'created', old[1], 'district', old[2], 'version', version + 1)
local vendor = redis.call('HGET', KEYS[1], 'vendor')
if vendor ~= old[3] then
  redis.call('ZREM', ARGV[1] .. 'vconns:' .. old[3], ARGV[2])
  redis.call('ZADD', ARGV[1] .. 'vconns:' .. vendor, 0, ARGV[2])
end
return 1
""")

_REMOVE_CONNECTION = audited("""
-- KEYS: connection hash, all index.  ARGV: key prefix, appId
local old = redis.call('HMGET', KEYS[1], 'vendor', 'district')
if not old[1] then return 0 end
audit()
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', ARGV[1] .. 'vconns:' .. old[1], ARGV[2])
redis.call('SREM', ARGV[1] .. 'dconns:' .. old[2], ARGV[2])
redis.call('DEL', ARGV[1] .. 'checks:' .. ARGV[2])
return 1
""")

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
        "version": 1,
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
        version=int(f.get("version", 0)),
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
        "version": 1,
    }
    if r.expires is not None:
        fields["expires"] = r.expires.isoformat()
    if r.drop_fields is not None:
        fields["drop_fields"] = json.dumps(list(r.drop_fields))
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
        version=int(f.get("version", 0)),
        drop_fields=tuple(json.loads(f["drop_fields"])) if "drop_fields" in f else None,
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

    async def add_district(
        self, record: DistrictRecord, *, audit: AuditEvent | None = None
    ) -> None:
        keys, args = self._audited(
            [self._key("district", record.name), self._key("districts")],
            [record.name, *_flat(district_fields(record))],
            audit,
        )
        with self._unavailable("add_district"):
            added = await self._add_district(keys=keys, args=args)
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

    async def update_district(
        self,
        record: DistrictRecord,
        *,
        reseal: Mapping[str, tuple[int, str]] | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        fields = district_fields(record)
        del fields["created"], fields["version"]
        triples: list[str | int] = []
        for app_id, (seen, sealed) in (reseal or {}).items():
            triples += [app_id, seen, sealed]
        keys, args = self._audited(
            [self._key("district", record.name), self._key("dconns", record.name)],
            [
                self._prefix,
                record.version,
                fields["updated"],
                -1 if reseal is None else len(reseal),
                *triples,
                *_flat(fields),
            ],
            audit,
        )
        with self._unavailable("update_district"):
            done = await self._update_district(keys=keys, args=args)
        if done == 0:
            raise NotFound(f'no district "{record.name}" in the store')
        if done == -1:
            raise Stale(f'district "{record.name}" changed meanwhile; try again')
        if done == -2:
            raise Stale(f'the connections of district "{record.name}" changed meanwhile; try again')

    async def remove_district(self, name: str, *, audit: AuditEvent | None = None) -> None:
        keys, args = self._audited(
            [self._key("district", name), self._key("districts"), self._key("dconns", name)],
            [name],
            audit,
        )
        with self._unavailable("remove_district"):
            result = cast("list[Any]", await self._remove_district(keys=keys, args=args))
        if result[0] == 0:
            raise NotFound(f'no district "{name}" in the store')
        if result[0] == -1:
            raise Conflict(f'district "{name}" is in use by connection {result[1]}')

    # -- connections ----------------------------------------------------------------------------

    async def add_connection(
        self,
        record: ConnectionRecord,
        *,
        district_in_store: bool,
        audit: AuditEvent | None = None,
    ) -> None:
        keys = [
            self._key("conn", record.app_id),
            self._key("conns"),
            self._key("vconns", record.vendor),
            self._key("dconns", record.district),
            self._key("district", record.district),
        ]
        args = [record.app_id, int(district_in_store), *_flat(connection_fields(record))]
        keys, args = self._audited(keys, args, audit)
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

    async def update_connection(
        self, record: ConnectionRecord, *, audit: AuditEvent | None = None
    ) -> None:
        fields = connection_fields(record)
        del fields["created"], fields["district"], fields["version"]
        keys, args = self._audited(
            [self._key("conn", record.app_id)],
            [self._prefix, record.app_id, record.version, *_flat(fields)],
            audit,
        )
        with self._unavailable("update_connection"):
            done = await self._update_connection(keys=keys, args=args)
        if done == 0:
            raise NotFound(f"no connection {record.app_id} in the store")
        if done == -1:
            raise Stale(f"connection {record.app_id} changed meanwhile; try again")

    async def remove_connection(self, app_id: str, *, audit: AuditEvent | None = None) -> None:
        # Its check history goes with it: an appId added again starts with no last check.
        keys, args = self._audited(
            [self._key("conn", app_id), self._key("conns")], [self._prefix, app_id], audit
        )
        with self._unavailable("remove_connection"):
            done = await self._remove_connection(keys=keys, args=args)
        if not done:
            raise NotFound(f"no connection {app_id} in the store")
