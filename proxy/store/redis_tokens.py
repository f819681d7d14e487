"""Vendor tokens in the Redis store (``TokenStore`` of ``base.py``); the layout is drawn in
``redis.py``'s docstring. Every change that touches more than one key is one Lua script, and
with Sentinel a change is acknowledged only once a replica has it (``_replicated``). Mixed into
``RedisStore``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from proxy.store.base import (
    AuditEvent,
    TokenRecord,
    VendorAuth,
)
from proxy.store.redis_rows import RedisRole, _time, _us, audited

_ADD_TOKEN = audited("""
-- KEYS: token hash, all index, vendor index, active index, vendors set
-- ARGV: id, vendor, created, end of life (or +inf), then hash field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
audit()
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[2])
return 1
""")

_REVOKE_TOKEN = audited("""
-- KEYS: token hash.  ARGV: key prefix, id, revoked
local vendor = redis.call('HGET', KEYS[1], 'vendor')
if not vendor or redis.call('HEXISTS', KEYS[1], 'revoked') == 1 then return 0 end
audit()
redis.call('HSET', KEYS[1], 'revoked', ARGV[3])
redis.call('ZADD', ARGV[1] .. 'active:' .. vendor, 'LT', ARGV[3], ARGV[2])
return 1
""")

_REVOKE_VENDOR = audited(
    """
-- KEYS: vendor index, active index.  ARGV: key prefix, revoked
-- The audit event names the ids revoked: spliced in for its "token_ids" placeholder.
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('HEXISTS', ARGV[1] .. 'token:' .. id, 'revoked') == 0 then
    out[#out + 1] = id
  end
end
if audit_entry ~= '' then
  local ids = '[]'
  if #out > 0 then ids = '["' .. table.concat(out, '","') .. '"]' end
  audit_entry = (string.gsub(audit_entry, '"' .. IDS .. '"', ids))
end
audit()
for _, id in ipairs(out) do
  redis.call('HSET', ARGV[1] .. 'token:' .. id, 'revoked', ARGV[2])
  redis.call('ZADD', KEYS[2], 'LT', ARGV[2], id)
end
return out
""".replace("IDS", "'" + "__TOKEN_IDS__" + "'")
)

_EXPIRE_VENDOR = """
-- KEYS: vendor index, active index.  ARGV: key prefix, at, id to keep
local at = tonumber(ARGV[2])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. 'token:' .. id
  if id ~= ARGV[3] and redis.call('HEXISTS', key, 'revoked') == 0 then
    local expires = redis.call('HGET', key, 'expires')
    if not expires or tonumber(expires) > at then
      redis.call('HSET', key, 'expires', ARGV[2])
      redis.call('ZADD', KEYS[2], 'LT', ARGV[2], id)
      out[#out + 1] = id
    end
  end
end
return out
"""

_NOT_BEFORE = """
-- KEYS: vendorauth hash.  ARGV: not before (may be ''), fingerprint (may be '')
-- The time only moves forward, whichever replica writes last.
if ARGV[1] ~= '' then
  local current = redis.call('HGET', KEYS[1], 'jwt_not_before')
  if not current or tonumber(current) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'jwt_not_before', ARGV[1])
  end
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'secret_fingerprint', ARGV[2]) end
return 0
"""

_TOUCH = """
-- KEYS: token hashes.  ARGV: last use of each.  The latest use wins, whichever replica is last.
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local current = redis.call('HGET', key, 'last_used')
    if not current or tonumber(current) < tonumber(ARGV[i]) then
      redis.call('HSET', key, 'last_used', ARGV[i])
    end
  end
end
return 0
"""


class RedisTokens(RedisRole):
    """The ``TokenStore`` methods of ``RedisStore``."""

    async def _replicated(
        self, script: Any, keys: list[str], args: list[Any], operation: str
    ) -> Any:
        raise NotImplementedError  # supplied by RedisStore

    def _register_token_scripts(self) -> None:
        register = self._client.register_script
        self._add_token = register(_ADD_TOKEN)
        self._revoke_token = register(_REVOKE_TOKEN)
        self._revoke_vendor = register(_REVOKE_VENDOR)
        self._expire_vendor = register(_EXPIRE_VENDOR)
        self._touch = register(_TOUCH)
        self._not_before = register(_NOT_BEFORE)

    def _token_fields(self, record: TokenRecord) -> dict[str, str | int]:
        """The hash of ``record``; unset times are absent fields."""
        fields: dict[str, str | int] = {
            "vendor": record.vendor,
            "secret_hash": record.secret_hash,
            "prefix": record.prefix,
            "created": _us(record.created),
        }
        if record.expires is not None:
            fields["expires"] = _us(record.expires)
        if record.revoked is not None:
            fields["revoked"] = _us(record.revoked)
        if record.last_used is not None:
            fields["last_used"] = _us(record.last_used)
        return fields

    @staticmethod
    def _life_end(fields: dict[str, str | int]) -> int | str:
        """The ``active:<vendor>`` score: the earlier of expiry and revocation, or +inf."""
        ends = [int(fields[name]) for name in ("expires", "revoked") if name in fields]
        return min(ends) if ends else "+inf"

    def _add_token_call(self, record: TokenRecord) -> tuple[list[str], list[str | int]]:
        """Keys and arguments of the add-token script for ``record``."""
        fields = self._token_fields(record)
        keys = [
            self._key("token", record.id),
            self._key("tokens"),
            self._key("vendor", record.vendor),
            self._key("active", record.vendor),
            self._key("vendors"),
        ]
        args: list[str | int] = [
            record.id,
            record.vendor,
            fields["created"],
            self._life_end(fields),
        ]
        for name, value in fields.items():
            args += [name, value]
        return keys, args

    def _record(self, token_id: str, fields: dict[str, str]) -> TokenRecord:
        created = _time(fields["created"])
        assert created is not None
        return TokenRecord(
            id=token_id,
            vendor=fields["vendor"],
            secret_hash=fields["secret_hash"],
            prefix=fields["prefix"],
            created=created,
            expires=_time(fields.get("expires")),
            revoked=_time(fields.get("revoked")),
            last_used=_time(fields.get("last_used")),
        )

    # -- tokens -------------------------------------------------------------------------------

    async def add_token(self, record: TokenRecord, *, audit: AuditEvent | None = None) -> None:
        keys, args = self._audited(*self._add_token_call(record), audit)
        with self._unavailable("add_token"):
            added = await self._replicated(self._add_token, keys, args, "the new token")
        if not added:
            raise ValueError(f"token id {record.id!r} already exists")

    async def get_token(self, token_id: str) -> TokenRecord | None:
        with self._unavailable("get_token"):
            # decode_responses=True: redis-py's bytes-or-str types are always str here.
            fields = cast(
                "dict[str, str]", await self._client.hgetall(self._key("token", token_id))
            )
        return self._record(token_id, fields) if fields else None

    async def list_tokens(self, vendor: str | None = None) -> list[TokenRecord]:
        index = self._key("tokens") if vendor is None else self._key("vendor", vendor)
        with self._unavailable("list_tokens"):
            # Sorted by (score, member): creation time, then id, as the sqlite store orders.
            ids = cast("list[str]", await self._client.zrange(index, 0, -1))
            pipe = self._client.pipeline(transaction=False)
            for token_id in ids:
                pipe.hgetall(self._key("token", token_id))
            rows = await pipe.execute() if ids else []
        return [self._record(i, fields) for i, fields in zip(ids, rows, strict=True) if fields]

    async def revoke_token(
        self, token_id: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> bool:
        keys, args = self._audited(
            [self._key("token", token_id)], [self._prefix, token_id, _us(at)], audit
        )
        with self._unavailable("revoke_token"):
            done = await self._replicated(self._revoke_token, keys, args, "the revocation")
        return bool(done)

    async def revoke_vendor(
        self, vendor: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> list[str]:
        if audit is not None:  # the script puts the ids it revokes in place of the marker
            audit = replace(audit, detail={**audit.detail, "token_ids": "__TOKEN_IDS__"})
        keys, args = self._audited(
            [self._key("vendor", vendor), self._key("active", vendor)],
            [self._prefix, _us(at)],
            audit,
        )
        with self._unavailable("revoke_vendor"):
            ids = await self._replicated(self._revoke_vendor, keys, args, "the revocation")
        return list(ids)

    async def expire_vendor(self, vendor: str, at: datetime, keep: str) -> list[str]:
        keys = [self._key("vendor", vendor), self._key("active", vendor)]
        with self._unavailable("expire_vendor"):
            ids = await self._replicated(
                self._expire_vendor, keys, [self._prefix, _us(at), keep], "the rotation grace"
            )
        return list(ids)

    async def get_vendor_auth(self, vendor: str) -> VendorAuth | None:
        with self._unavailable("get_vendor_auth"):
            fields = cast(
                "dict[str, str]", await self._client.hgetall(self._key("vendorauth", vendor))
            )
        if not fields:
            return None
        return VendorAuth(_time(fields.get("jwt_not_before")), fields.get("secret_fingerprint"))

    async def set_jwt_not_before(self, vendor: str, at: datetime) -> None:
        with self._unavailable("set_jwt_not_before"):
            await self._replicated(
                self._not_before, [self._key("vendorauth", vendor)], [_us(at), ""], "the revocation"
            )

    async def set_secret_fingerprint(
        self, vendor: str, fingerprint: str, *, not_before: datetime | None = None
    ) -> None:
        if not fingerprint:
            raise ValueError("an empty secret fingerprint")
        when: int | str = "" if not_before is None else _us(not_before)
        with self._unavailable("set_secret_fingerprint"):
            await self._replicated(
                self._not_before,
                [self._key("vendorauth", vendor)],
                [when, fingerprint],
                "the JWT cut-off",
            )

    async def touch(self, last_used: dict[str, datetime]) -> None:
        if not last_used:
            return
        keys = [self._key("token", token_id) for token_id in last_used]
        args = [_us(at) for at in last_used.values()]
        with self._unavailable("touch"):
            await self._touch(keys=keys, args=args)

    async def count_active(self, at: datetime) -> dict[str, int]:
        after = f"({_us(at)}"  # exclusive: a token whose life ends exactly at ``at`` is over
        with self._unavailable("count_active"):
            vendors = sorted(cast("set[str]", await self._client.smembers(self._key("vendors"))))
            pipe = self._client.pipeline(transaction=False)
            for vendor in vendors:
                pipe.zcount(self._key("active", vendor), after, "+inf")
            counts = await pipe.execute() if vendors else []
        return {vendor: int(n) for vendor, n in zip(vendors, counts, strict=True)}
