"""Vendor authentication: ``Authorization: Bearer`` -> the vendor behind it.

Two kinds of bearer are accepted on the gateway (docs/http-api.md): opaque
``orp_<id>_<secret>`` tokens looked up in the store, and HS256 JWTs issued by
``POST /oauth/token`` and verified with any of ``[server] jwt_keys``.

Store lookups are cached for ``[store] cache_ttl``: the hot path does no I/O for a token seen
recently, revocation reaches every replica within that bound, and a store outage (or a Sentinel
failover, docs/configuration.md) is survived by tokens verified recently: while
the store cannot be asked, a token that passed every check within ``cache_ttl`` +
``STALE_GRACE`` keeps working; any other gets 503. Concurrent misses for one token share a
single store lookup.

JWTs need no store record, but the vendor's JWT "not before" (``proxy.gateway.jwt_cutoff``) is read
from the store and cached the same way; during a store outage the last value read stays in
force (the cut only ever moves forward), and a vendor never looked up gets 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
from cachetools import TTLCache

from proxy import tokens
from proxy.config import VendorConfig
from proxy.errors import StoreUnavailable, Unauthorized
from proxy.gateway.jwt_cutoff import cut_second
from proxy.scopes import SCOPES
from proxy.store.base import Store, TokenRecord

log = logging.getLogger("oneroster_proxy")

JWT_ISSUER = "oneroster-proxy"
JWT_AUDIENCE = "oneroster-proxy"
JWT_ALGORITHM = "HS256"
# How long past its cache_ttl a verified token is still honoured while the store is
# unavailable: longer than a Sentinel failover (docs/http-api.md: within 10 s) plus a restart of
# a lone Redis, short enough that a token revoked during a long outage does not live on for long.
STALE_GRACE = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the vendor, the token id (an opaque token's store id, a JWT's ``jti``),
    and for a JWT the scopes it was issued for (None: no narrowing) and its ``iat``."""

    vendor: str
    token_id: str | None
    scopes: frozenset[str] | None = None
    is_jwt: bool = False
    issued_at: int = 0


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing bearer token")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("expected Authorization: Bearer <token>")
    return value


class Clock(Protocol):
    """Where the authenticator reads time: the ``time`` module itself, or a test's clock that
    moves only when told (so a token's expiry or a cache TTL is judged without waiting)."""

    def time(self) -> float: ...
    def monotonic(self) -> float: ...


class Authenticator:
    """Turns bearer tokens into principals; one per app, shared across config reloads."""

    def __init__(
        self, store: Store, cache_ttl: float, *, maxsize: int = 100_000, clock: Clock = time
    ) -> None:
        self.store = store
        self.clock = clock
        # token id -> record (or None for unknown ids); the secret is checked on every request.
        self._cache: TTLCache[str, TokenRecord | None] = self._ttl_cache(maxsize, cache_ttl)
        self._pending: dict[str, asyncio.Future[TokenRecord | None]] = {}
        # The hot path: a whole opaque token that passed every check -> (principal, monotonic
        # time its cache entry lapses, epoch time it expires or was revoked). A hit costs two
        # clock reads: no parsing, no hash, no datetime. Keyed by the full token, so only a
        # request holding the exact secret can hit it (dict lookups hash with a per-process
        # random key, so the lookup leaks nothing about near misses).
        self._verified: dict[str, tuple[Principal, float, float | None]] = {}
        self._ttl = cache_ttl
        self._max_verified = maxsize
        self.last_used: dict[str, float] = {}  # token id -> epoch seconds
        # vendor -> its JWT "not before" in epoch seconds (None: never cut), fresh for
        # cache_ttl; the last value read outlives the TTL, for store outages.
        self._cutoffs: TTLCache[str, float | None] = self._ttl_cache(maxsize, cache_ttl)
        self._last_cutoffs: dict[str, float | None] = {}
        self._cutoff_locks: dict[str, asyncio.Lock] = {}

    def _ttl_cache(self, maxsize: float, ttl: float) -> TTLCache[str, Any]:
        return TTLCache(maxsize=maxsize, ttl=ttl, timer=lambda: self.clock.monotonic())

    def set_ttl(self, cache_ttl: float) -> None:
        if cache_ttl != self._cache.ttl:
            self._cache = self._ttl_cache(self._cache.maxsize, cache_ttl)
            self._cutoffs = self._ttl_cache(self._cutoffs.maxsize, cache_ttl)
            self._verified.clear()
            self._ttl = cache_ttl

    def forget_cutoff(self, vendor: str) -> None:
        """Read the vendor's JWT cut from the store again on next use (after a local cut)."""
        self._cutoffs.pop(vendor, None)

    async def jwt_cutoff(self, vendor: str) -> float | None:
        """The vendor's JWT "not before" (epoch seconds), cached for ``cache_ttl``. A burst of
        requests meeting a lapsed entry makes one store read: the first reads under the
        vendor's lock, the others find its answer when they get the lock."""
        try:
            return self._cutoffs[vendor]
        except KeyError:
            pass
        lock = self._cutoff_locks.get(vendor)
        if lock is None:
            if len(self._cutoff_locks) >= self._max_verified:
                self._cutoff_locks.clear()
            lock = self._cutoff_locks[vendor] = asyncio.Lock()
        async with lock:
            try:
                return self._cutoffs[vendor]  # read by the task that held the lock
            except KeyError:
                pass
            return await self._read_cutoff(vendor)

    async def _read_cutoff(self, vendor: str) -> float | None:
        try:
            record = await self.store.get_vendor_auth(vendor)
        except StoreUnavailable:
            if vendor in self._last_cutoffs:
                return self._last_cutoffs[vendor]
            raise
        at = record.jwt_not_before if record is not None else None
        value = at.timestamp() if at is not None else None
        self._cutoffs[vendor] = value
        if len(self._last_cutoffs) >= self._max_verified:
            self._last_cutoffs.clear()
        self._last_cutoffs[vendor] = value
        return value

    def forget(self, token_id: str | None = None) -> None:
        """Drop cached lookups (all, or one id) after a local revoke, so it applies at once."""
        if token_id is None:
            self._cache.clear()
            self._verified.clear()
        else:
            self._cache.pop(token_id, None)
            for value in [v for v, e in self._verified.items() if e[0].token_id == token_id]:
                del self._verified[value]

    async def authenticate(
        self,
        header: str | None,
        vendors: Mapping[str, VendorConfig],
        jwt_keys: tuple[str, ...],
        now: datetime | None = None,
    ) -> Principal:
        value = bearer(header)
        entry = self._verified.get(value)
        stale: Principal | None = None
        if entry is not None:
            principal, lapses, ends = entry
            clock = self.clock
            mono, wall = clock.monotonic(), clock.time()
            if ends is not None and wall >= ends:
                del self._verified[value]
            elif mono < lapses:
                self.last_used[principal.token_id or ""] = wall  # opaque: always an id
                return self._vendor_check(principal, vendors)
            elif mono < lapses + STALE_GRACE:
                stale = principal  # used only if the store cannot be asked
            else:
                del self._verified[value]
        now = now or datetime.fromtimestamp(self.clock.time(), UTC)
        if value.startswith(tokens.PREFIX):
            try:
                principal = await self._opaque(value, now)
            except StoreUnavailable:
                if stale is None:
                    raise
                # A store outage (or a Sentinel failover) outlasting cache_ttl: a token that
                # passed every check moments ago keeps working, as the documented "cached
                # tokens keep working" promises; a revocation made meanwhile could not reach this
                # replica
                # anyway, and it applies once the store answers again.
                self.last_used[stale.token_id or ""] = now.timestamp()
                principal = stale
            except Unauthorized:
                self._verified.pop(value, None)
                raise
        elif value.count(".") == 2 and jwt_keys:
            principal = decode_jwt(value, jwt_keys)
            cutoff = await self.jwt_cutoff(principal.vendor)
            # SECURITY: the vendor's kill switch (revoke --all, a changed client_secret).
            if cutoff is not None and principal.issued_at <= cut_second(cutoff):
                raise _refused("token revoked", principal)
        else:
            raise Unauthorized("unknown token")
        return self._vendor_check(principal, vendors)

    @staticmethod
    def _vendor_check(principal: Principal, vendors: Mapping[str, VendorConfig]) -> Principal:
        # SECURITY: a token of a vendor that is no longer configured reaches nothing, and
        # removing a vendor's client_secret ends the JWTs it was issued at once.
        vendor = vendors.get(principal.vendor)
        if vendor is None:
            raise _refused("unknown token", principal)
        if principal.is_jwt and not vendor.client_secret:
            raise _refused("this vendor's client credentials are withdrawn", principal)
        return principal

    async def _opaque(self, value: str, now: datetime) -> Principal:
        parsed = tokens.parse_token(value)
        if parsed is None:
            raise Unauthorized("unknown token")
        token_id, secret = parsed
        record = await self._lookup(token_id)
        if record is None or not tokens.secret_matches(record, secret):
            # The id parsed: the log line names it (someone holds a forged or stale token).
            raise Unauthorized("unknown token", token_id=token_id)
        if record.revoked is not None and record.revoked <= now:
            raise Unauthorized("token revoked", vendor=record.vendor, token_id=token_id)
        if record.expires is not None and now >= record.expires:
            raise Unauthorized("token expired", vendor=record.vendor, token_id=token_id)
        self.last_used[token_id] = now.timestamp()
        principal = Principal(vendor=record.vendor, token_id=token_id)
        ends = [t.timestamp() for t in (record.expires, record.revoked) if t is not None]
        if len(self._verified) >= self._max_verified:
            self._verified.clear()
        lapses = self.clock.monotonic() + self._ttl
        self._verified[value] = (principal, lapses, min(ends, default=None))
        return principal

    async def _lookup(self, token_id: str) -> TokenRecord | None:
        try:
            return self._cache[token_id]
        except KeyError:
            pass
        pending = self._pending.get(token_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                # The request that started the look-up was cancelled (its vendor hung up),
                # not this one: look the token up again rather than fail or wait forever.
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                return await self._lookup(token_id)
        future: asyncio.Future[TokenRecord | None] = asyncio.get_running_loop().create_future()
        self._pending[token_id] = future
        try:
            record = await self.store.get_token(token_id)
        except StoreUnavailable as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            self._cache[token_id] = record
            future.set_result(record)
            return record
        finally:
            del self._pending[token_id]
            if not future.done():
                # Cancelled (or failed unexpectedly): waiters must not wait on it forever.
                future.cancel()

    async def flush_last_used(self) -> None:
        """Write batched last-use times; called periodically, never per request."""
        if not self.last_used:
            return
        batch, self.last_used = self.last_used, {}
        try:
            await self.store.touch(
                {key: datetime.fromtimestamp(at, UTC) for key, at in batch.items()}
            )
        except StoreUnavailable:
            for key, value in batch.items():
                self.last_used.setdefault(key, value)
            raise


def _refused(description: str, principal: Principal) -> Unauthorized:
    return Unauthorized(description, vendor=principal.vendor, token_id=principal.token_id)


def encode_jwt(
    vendor: str, scopes: frozenset[str], key: str, *, ttl: float, now: datetime | None = None
) -> str:
    """An HS256 JWT for ``vendor`` (``sub``) narrowed to ``scopes`` (short names, space
    separated in ``scope``), valid ``ttl`` seconds from ``now``. ``jti`` (RFC 7519 §4.1.7)
    names it in access log lines, as an opaque token's id does."""
    issued = int((now or datetime.now(UTC)).timestamp())
    claims = {
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "sub": vendor,
        "iat": issued,
        "exp": issued + int(ttl),
        "jti": tokens.new_id(),
        "scope": " ".join(sorted(scopes)),
    }
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM)


def decode_jwt(value: str, keys: tuple[str, ...]) -> Principal:
    """Verify with each configured key in turn (rotation); HS256 only."""
    for key in keys:
        options: dict[str, Any] = {"require": ["exp", "iat", "iss", "aud", "sub"]}
        try:
            claims = _decode(value, key, options)
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError as exc:
            # The signature held: who it belongs to goes into the refusal's log line.
            try:
                expired = _principal(_decode(value, key, {**options, "verify_exp": False}))
            except (jwt.InvalidTokenError, Unauthorized):
                raise Unauthorized("token expired") from exc
            raise _refused("token expired", expired) from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("invalid token") from exc
        return _principal(claims)
    raise Unauthorized("invalid token")


def _decode(value: str, key: str, options: Any) -> dict[str, Any]:
    return jwt.decode(
        value,
        key,
        # SECURITY: the algorithm is pinned; "none" and RS/HS confusion are refused.
        algorithms=[JWT_ALGORITHM],
        audience=JWT_AUDIENCE,
        issuer=JWT_ISSUER,
        options=options,
    )


def _principal(claims: dict[str, Any]) -> Principal:
    scope_claim = claims.get("scope", "")
    scopes = frozenset(s for s in str(scope_claim).split() if s in SCOPES)
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("invalid token")
    jti = claims.get("jti")
    token_id = jti if isinstance(jti, str) and tokens.ID_RE.fullmatch(jti) else None
    return Principal(
        vendor=subject, token_id=token_id, scopes=scopes, is_jwt=True, issued_at=int(claims["iat"])
    )
