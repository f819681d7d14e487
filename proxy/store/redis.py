"""The shared store in Redis, for several replicas: the connection, its plumbing, the audit
trail; each other role in its own module (``redis_tokens``, ``redis_connections``,
``redis_checks``, ``redis_limits``), mixed into ``RedisStore``.

docs/configuration.md (``[store] url = "redis://host:6379/0"`` for several replicas) and "Redis
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
    orp:session:<id>     console session: when it ends (dropped by Redis then)
    orp:ledger, orp:ledger:<day>|<appId>|<collection>, orp:ledgerf:...
                         the access ledger (see ``redis_ledger``)
    orp:district:<name>, orp:districts, orp:conn:<appId>, orp:conns, orp:vconns:<vendor>,
    orp:dconns:<district>   districts and connections (see ``redis_connections``)

Times are integer microseconds since the epoch: exact as Lua numbers and as sorted-set scores,
so scripts compare them without parsing. Every change that touches more than one key is one
Lua script, so replicas never see half of it. Scripts derive some key names themselves, so
this store wants a single Redis (or a primary with replicas), not Redis Cluster; ``ZADD LT``
needs Redis >= 6.2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy.errors import StoreUnavailable
from proxy.store.base import (
    AuditEvent,
)
from proxy.store.redis_checks import RedisChecks
from proxy.store.redis_connections import RedisConnections
from proxy.store.redis_intake import RedisIntake
from proxy.store.redis_ledger import RedisLedger
from proxy.store.redis_limits import RedisLimits
from proxy.store.redis_rows import audit_entry
from proxy.store.redis_sessions import RedisSessions
from proxy.store.redis_tokens import RedisTokens
from proxy.store.sentinel import SCHEME as SENTINEL_SCHEME
from proxy.store.sentinel import master_client, parse_redis_url, parse_sentinel_url


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _detail(exc: BaseException) -> str:
    """One line for a redis-py error. ``MasterNotFoundError`` carries the repr of every
    sentinel client it asked; an operator needs only what each sentinel answered."""
    if isinstance(exc, MasterNotFoundError):
        text = str(exc)
        head = text.partition(" : ")[0]
        causes = re.findall(r" - (?:\w+:)?\w+Error: (.*?)\.?(?:, <|$)", text)
        return f"{head} ({'; '.join(causes)})" if causes else head
    return f"{type(exc).__name__}: {exc}"


class RedisStore(
    RedisTokens,
    RedisConnections,
    RedisChecks,
    RedisLimits,
    RedisIntake,
    RedisSessions,
    RedisLedger,
):
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
        if scheme == SENTINEL_SCHEME:
            parsed = parse_sentinel_url(url)
            self.url_display = parsed.display
            self._password = parsed.password
            self._client, self._sentinel = master_client(parsed, **options)
            self._wait_replicas = 1
        elif scheme in ("redis", "rediss"):
            plain = parse_redis_url(url)
            self.url_display = plain.display
            self._password = plain.password
            self._client = aioredis.from_url(url, **options)
        else:
            raise ValueError(
                "redis store: URL must start with redis://, rediss:// or redis+sentinel://, "
                f"got {scheme or 'no scheme'}://"
            )
        self._prefix = prefix
        self._audit_max = audit_max
        self._register_token_scripts()
        self._register_connection_scripts()
        self._register_check_scripts()
        self._register_limit_scripts()
        self._register_intake_scripts()

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
            detail = _detail(exc)
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

    # -- audit --------------------------------------------------------------------------------

    async def add_audit(self, event: AuditEvent) -> None:
        key = self._key("audit")
        with self._unavailable("add_audit"):
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, audit_entry(event))
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
