"""The shared store: tokens, audit and limiter state in Redis, for several replicas.

SPEC.md "Config" (``[store] url = "redis://host:6379/0"`` for several replicas) and "Redis
high availability": one interface with the sqlite store; an outage is a quick 503, and the
store recovers by itself when redis returns.

Layout (``orp:`` is the default prefix):

    orp:token:<id>       hash: vendor, secret_hash, prefix, created, expires, revoked, last_used
    orp:tokens           sorted set of every token id, scored by creation time
    orp:vendor:<vendor>  sorted set of the vendor's token ids, scored by creation time
    orp:active:<vendor>  sorted set of the vendor's token ids, scored by the end of their life
                         (earlier of expiry and revocation, +inf if none): count_active is ZCOUNT
    orp:vendors          set of vendor names that have tokens
    orp:vendorauth:<v>   hash: jwt_not_before, secret_fingerprint (the JWT kill switch)
    orp:audit            list of JSON events, newest last, capped
    orp:bucket:<key>     hash: tokens, updated (token bucket, server time)
    orp:slots:<key>      sorted set of holders scored by their slot's expiry (server time, ms)
    orp:checks:<appId>   list of JSON check results, newest first, capped at CHECK_HISTORY
    orp:invite:<hash>    hash: app_id, vendor, district_name, scopes (JSON), created, expires,
                         spent; removed by Redis a day after it expires

Times are integer microseconds since the epoch: exact as Lua numbers and as sorted-set scores,
so scripts compare them without parsing. Every change that touches more than one key is one
Lua script, so replicas never see half of it. Scripts derive some key names themselves, so
this store wants a single Redis (or a primary with replicas), not Redis Cluster; ``ZADD LT``
needs Redis >= 6.2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..errors import StoreUnavailable
from . import sentinel
from .base import (
    CHECK_HISTORY,
    AuditEvent,
    CheckResult,
    InviteRecord,
    TokenRecord,
    VendorAuth,
    validate_bucket,
    validate_slot,
)
from .redis_connections import RedisConnections
from .redis_rows import _time, _us

_ADD_TOKEN = """
-- KEYS: token hash, all index, vendor index, active index, vendors set
-- ARGV: id, vendor, created, end of life (or +inf), then hash field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[2])
return 1
"""

_REVOKE_TOKEN = """
-- KEYS: token hash.  ARGV: key prefix, id, revoked
local vendor = redis.call('HGET', KEYS[1], 'vendor')
if not vendor or redis.call('HEXISTS', KEYS[1], 'revoked') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', ARGV[3])
redis.call('ZADD', ARGV[1] .. 'active:' .. vendor, 'LT', ARGV[3], ARGV[2])
return 1
"""

_REVOKE_VENDOR = """
-- KEYS: vendor index, active index.  ARGV: key prefix, revoked
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. 'token:' .. id
  if redis.call('HEXISTS', key, 'revoked') == 0 then
    redis.call('HSET', key, 'revoked', ARGV[2])
    redis.call('ZADD', KEYS[2], 'LT', ARGV[2], id)
    out[#out + 1] = id
  end
end
return out
"""

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

# Server TIME, not each replica's clock: replicas with skewed clocks still share one bucket.
# Numbers go back as strings because Redis truncates a Lua number reply to an integer.
_TAKE_TOKENS = """
-- KEYS: bucket hash.  ARGV: rate per second, burst, cost
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens, updated = tonumber(state[1]), tonumber(state[2])
if not tokens or not updated then tokens, updated = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
if tokens + 1e-9 < cost then return string.format('%.17g', (cost - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', math.max(0, tokens - cost)),
           'updated', string.format('%.17g', now))
-- A bucket left alone refills completely; then it is the same as no bucket at all.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return '0'
"""

_ACQUIRE_SLOT = """
-- KEYS: slots sorted set.  ARGV: limit, holder, ttl in ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
-- Holders that crashed without releasing lose their slot here, once their ttl has passed.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

_ADD_INVITE = """
-- KEYS: invite hash.  ARGV: expire-at (ms), then hash field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""

_SPEND_INVITE = """
-- KEYS: invite hash.  ARGV: at.  Exactly one caller wins: the script runs alone.
local expires = redis.call('HGET', KEYS[1], 'expires')
if not expires or redis.call('HEXISTS', KEYS[1], 'spent') == 1 then return 0 end
if tonumber(expires) <= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1])
return 1
"""


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _display(url: str) -> str:
    """The URL without user or password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisStore(RedisConnections):
    """``Store`` on one Redis server, shared by every replica and worker.

    ``open()`` does not contact Redis: a proxy starts while Redis is down (``/readyz`` says
    503) and works as soon as it is back. A failed call raises ``StoreUnavailable`` within
    about ``timeout`` seconds; the next call reconnects.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        prefix: str = "orp:",
        audit_max: int = 10_000,
    ) -> None:
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # One immediate retry on a connection error: after Redis restarts (or a Sentinel
            # failover), the first command meets a pooled connection that is dead, and a
            # fresh one works. No retry on timeouts: a hung Redis must become a 503 after one
            # ``timeout``, not several.
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "client_name": "oneroster-proxy",
        }
        self._sentinel: Any = None
        # Token issue and revocation wait for this many replicas (WAIT): only with Sentinel,
        # where a replica is what survives the master; a lone Redis has none to wait for.
        self._wait_replicas = 0
        self._wait_ms = max(1, int(timeout * 500))  # half the socket timeout: WAIT answers first
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme == sentinel.SCHEME:
            parsed = sentinel.parse_sentinel_url(url)
            self.url_display = parsed.display
            self._password = parsed.password
            self._client, self._sentinel = sentinel.master_client(parsed, **options)
            self._wait_replicas = 1
        elif scheme in ("redis", "rediss"):
            self.url_display = _display(url)
            self._password = urlsplit(url).password
            self._client = aioredis.from_url(url, **options)
        else:
            raise ValueError(
                "redis store: URL must start with redis://, rediss:// or redis+sentinel://, "
                f"got {scheme or 'no scheme'}://"
            )
        self._prefix = prefix
        self._audit_max = audit_max
        register = self._client.register_script
        self._add_token = register(_ADD_TOKEN)
        self._revoke_token = register(_REVOKE_TOKEN)
        self._revoke_vendor = register(_REVOKE_VENDOR)
        self._expire_vendor = register(_EXPIRE_VENDOR)
        self._touch = register(_TOUCH)
        self._not_before = register(_NOT_BEFORE)
        self._take_tokens = register(_TAKE_TOKENS)
        self._acquire_slot = register(_ACQUIRE_SLOT)
        self._add_invite = register(_ADD_INVITE)
        self._spend_invite = register(_SPEND_INVITE)
        self._register_connection_scripts()

    async def __aenter__(self) -> RedisStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _unavailable(self, operation: str) -> Iterator[None]:
        """The one place where redis-py's errors become ``StoreUnavailable``."""
        try:
            yield
        except (RedisError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if self._password:
                # SECURITY: the URL's password never reaches a message, a log or a response.
                detail = detail.replace(self._password, "***")
            raise StoreUnavailable(
                f"redis store {self.url_display} unavailable ({operation}): {detail}"
            ) from exc

    async def _replicated(
        self, script: Any, keys: list[str], args: list[Any], operation: str
    ) -> Any:
        """Run a token-changing script; with Sentinel, answer only once a replica has it.

        WAIT counts the replicas that acknowledged this connection's writes, so it goes in one
        pipeline with the script (one connection). A master that fails over after this
        returned cannot take the change with it: the replica it acknowledged is promoted."""
        if not self._wait_replicas:
            return await script(keys=keys, args=args)
        pipe = self._client.pipeline(transaction=False)
        await script(keys=keys, args=args, client=pipe)  # queued: a pipeline answers on execute
        pipe.execute_command("WAIT", self._wait_replicas, self._wait_ms)
        result, acked = await pipe.execute()
        if int(acked) < self._wait_replicas:
            raise StoreUnavailable(
                f"redis store {self.url_display}: {operation} reached the master but no replica "
                f"confirmed it within {self._wait_ms} ms; it may not survive a failover, "
                "so it is not acknowledged: try again once a replica is back"
            )
        return result

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}{':' if name else ''}{name}"

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

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Nothing to do: connections are made on first use (and remade after an outage)."""

    async def close(self) -> None:
        with self._unavailable("close"):
            await self._client.aclose()
            if self._sentinel is not None:
                await self._sentinel.aclose()

    async def ping(self) -> None:
        with self._unavailable("ping"):
            await self._client.ping()

    # -- tokens -------------------------------------------------------------------------------

    async def add_token(self, record: TokenRecord) -> None:
        keys, args = self._add_token_call(record)
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

    async def revoke_token(self, token_id: str, at: datetime) -> bool:
        with self._unavailable("revoke_token"):
            done = await self._replicated(
                self._revoke_token,
                [self._key("token", token_id)],
                [self._prefix, token_id, _us(at)],
                "the revocation",
            )
        return bool(done)

    async def revoke_vendor(self, vendor: str, at: datetime) -> list[str]:
        keys = [self._key("vendor", vendor), self._key("active", vendor)]
        with self._unavailable("revoke_vendor"):
            ids = await self._replicated(
                self._revoke_vendor, keys, [self._prefix, _us(at)], "the revocation"
            )
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

    # -- audit --------------------------------------------------------------------------------

    async def add_audit(self, event: AuditEvent) -> None:
        entry = json.dumps(
            {
                "at": _iso(event.at),
                "action": event.action,
                "interface": event.interface,
                "vendor": event.vendor,
                "token_id": event.token_id,
                "detail": event.detail,
            },
            separators=(",", ":"),
        )
        key = self._key("audit")
        with self._unavailable("add_audit"):
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, entry)
            pipe.ltrim(key, -self._audit_max, -1)
            await pipe.execute()

    async def list_audit(self, limit: int = 1000) -> list[AuditEvent]:
        if limit <= 0:
            return []
        with self._unavailable("list_audit"):
            entries = await self._client.lrange(self._key("audit"), -limit, -1)
        events = []
        for entry in entries:
            data: dict[str, Any] = json.loads(entry)
            events.append(
                AuditEvent(
                    at=datetime.fromisoformat(data["at"]).astimezone(UTC),
                    action=data["action"],
                    interface=data["interface"],
                    vendor=data["vendor"],
                    token_id=data["token_id"],
                    detail=data["detail"],
                )
            )
        return events

    # -- background checks and intake links ---------------------------------------------------

    async def add_check_result(self, result: CheckResult) -> None:
        entry = json.dumps(
            {"at": _us(result.at), "document": result.document}, separators=(",", ":")
        )
        key = self._key("checks", result.app_id)
        with self._unavailable("add_check_result"):
            pipe = self._client.pipeline(transaction=True)
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, CHECK_HISTORY - 1)
            await pipe.execute()

    @staticmethod
    def _check_result(app_id: str, entry: str) -> CheckResult:
        data: dict[str, Any] = json.loads(entry)
        at = _time(str(data["at"]))
        assert at is not None
        return CheckResult(app_id=app_id, at=at, document=data["document"])

    async def list_check_results(
        self, app_id: str, limit: int = CHECK_HISTORY
    ) -> list[CheckResult]:
        if limit <= 0:
            return []
        with self._unavailable("list_check_results"):
            entries = cast(
                "list[str]",
                await self._client.lrange(self._key("checks", app_id), 0, limit - 1),
            )
        return [self._check_result(app_id, e) for e in entries]

    async def last_check_results(self, app_ids: list[str]) -> dict[str, list[CheckResult]]:
        if not app_ids:
            return {}
        with self._unavailable("last_check_results"):
            pipe = self._client.pipeline(transaction=False)
            for app_id in app_ids:
                pipe.lrange(self._key("checks", app_id), 0, 1)
            rows = await pipe.execute()
        return {
            app_id: [self._check_result(app_id, e) for e in entries]
            for app_id, entries in zip(app_ids, rows, strict=True)
            if entries
        }

    async def add_invite(self, invite: InviteRecord) -> None:
        fields: list[str | int] = [
            "app_id",
            invite.app_id,
            "vendor",
            invite.vendor,
            "district_name",
            invite.district_name,
            "scopes",
            json.dumps(list(invite.scopes)),
            "created",
            _us(invite.created),
            "expires",
            _us(invite.expires),
        ]
        if invite.spent is not None:
            fields += ["spent", _us(invite.spent)]
        # Kept a day past its expiry, so a late visitor still meets "expired", then dropped.
        drop_at_ms = _us(invite.expires) // 1000 + 86_400_000
        with self._unavailable("add_invite"):
            added = await self._add_invite(
                keys=[self._key("invite", invite.token_hash)], args=[drop_at_ms, *fields]
            )
        if not added:
            raise ValueError("an invite with that token already exists")

    async def get_invite(self, token_hash: str) -> InviteRecord | None:
        with self._unavailable("get_invite"):
            fields = cast(
                "dict[str, str]", await self._client.hgetall(self._key("invite", token_hash))
            )
        if not fields:
            return None
        created, expires = _time(fields["created"]), _time(fields["expires"])
        assert created is not None and expires is not None
        return InviteRecord(
            token_hash=token_hash,
            app_id=fields["app_id"],
            vendor=fields["vendor"],
            district_name=fields["district_name"],
            scopes=tuple(json.loads(fields["scopes"])),
            created=created,
            expires=expires,
            spent=_time(fields.get("spent")),
        )

    async def spend_invite(self, token_hash: str, at: datetime) -> bool:
        with self._unavailable("spend_invite"):
            done = await self._spend_invite(keys=[self._key("invite", token_hash)], args=[_us(at)])
        return bool(done)

    # -- limiter state ------------------------------------------------------------------------

    async def take_tokens(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        validate_bucket(rate, burst, cost)
        with self._unavailable("take_tokens"):
            wait = await self._take_tokens(
                keys=[self._key("bucket", key)], args=[repr(rate), repr(burst), repr(cost)]
            )
        return float(wait)

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl: float) -> bool:
        validate_slot(limit, ttl)
        ttl_ms = max(1, math.ceil(ttl * 1000))
        with self._unavailable("acquire_slot"):
            got = await self._acquire_slot(
                keys=[self._key("slots", key)], args=[limit, holder, ttl_ms]
            )
        return bool(got)

    async def release_slot(self, key: str, holder: str) -> None:
        with self._unavailable("release_slot"):
            await self._client.zrem(self._key("slots", key), holder)
