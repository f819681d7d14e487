"""The JWT kill switch: a per-vendor "not before" time kept in the store.

docs/http-api.md: ``tokens revoke --all
VENDOR`` (and ``DELETE /admin/vendors/{vendor}/tokens``) end every JWT already issued to the
vendor, and so does removing or changing its ``client_secret``. A JWT has no store record to
revoke, so the store keeps, per vendor, the instant before which its JWTs no longer count;
every replica reads it (cached for ``[store] cache_ttl``) and refuses a JWT issued at or before
it. JWT ``iat`` is whole seconds (RFC 7519 §2 NumericDate, as most clients expect), so the cut
covers the whole second it falls in: ``iat <= floor(not_before)`` is refused, and the token
endpoint waits out the rest of that second before it issues a new JWT.

A changed secret is noticed whenever a config is loaded (``serve`` start, SIGHUP, admin
reload) on any replica: the store holds a salted PBKDF2 fingerprint of the secret it last saw
(RFC 8018 §5.2), never the secret, and a loaded secret that does not match it moves the cut.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from proxy.config import VendorConfig
from proxy.errors import StoreUnavailable
from proxy.logs import log_action
from proxy.store.base import Store
from proxy.tokens import now_utc


class _Authenticator(Protocol):
    """What a cut needs of ``proxy.gateway.inbound.Authenticator`` (named here so the two modules do
    not import each other)."""

    def forget_cutoff(self, vendor: str) -> None: ...


log = logging.getLogger("oneroster_proxy")

NO_SECRET = "none"
_SCHEME = "pbkdf2-sha256"
# A client secret may be a memorable phrase; the store may be less guarded than the config
# (a shared redis). Enough work per guess to matter, little enough for a reload of many vendors.
_ITERATIONS = 50_000


def fingerprint(secret: str | None, *, salt: bytes | None = None) -> str:
    """``pbkdf2-sha256$<iterations>$<salt>$<digest>`` of ``secret``, or ``none``."""
    if not secret:
        return NO_SECRET
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, _ITERATIONS)
    return f"{_SCHEME}${_ITERATIONS}${_b64(salt)}${_b64(digest)}"


def matches(stored: str, secret: str | None) -> bool:
    """Whether ``stored`` is the fingerprint of ``secret`` (constant time for the digest)."""
    if not secret or stored == NO_SECRET:
        return not secret and stored == NO_SECRET
    try:
        scheme, rounds, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        again = hashlib.pbkdf2_hmac("sha256", secret.encode(), _unb64(salt), int(rounds))
    except ValueError:  # a fingerprint this version cannot read counts as a change
        return False
    return hmac.compare_digest(_b64(again), digest)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cut_second(not_before: float) -> int:
    """The last ``iat`` second that the cut at ``not_before`` (epoch seconds) ends."""
    return math.floor(not_before)


class SecretWatch:
    """Compares each loaded vendor ``client_secret`` with the store's fingerprint and moves
    the vendor's JWT cut when it changed. Remembers, per process, the secrets it already
    matched, so a reload re-derives a fingerprint only for a vendor whose secret is new here."""

    def __init__(self) -> None:
        # vendor -> (SHA-256 of the secret as loaded, the store fingerprint it matched)
        self._seen: dict[str, tuple[str, str]] = {}
        # The store was down at the last load: the comparison is owed (retried periodically).
        self.pending = False

    async def sync_logged(
        self, store: Store, vendors: Mapping[str, VendorConfig], authenticator: _Authenticator
    ) -> None:
        """``sync``, for a load or reload: a store outage defers the comparison (``pending``)
        instead of failing the load; a vendor cut here is refused at once by this process."""
        try:
            cut = await self.sync(store, vendors)
        except StoreUnavailable as exc:
            if not self.pending:
                log.warning(
                    "could not compare vendor client secrets with the store; will retry: %s",
                    exc.description,
                )
            self.pending = True
            return
        self.pending = False
        for vendor in cut:
            authenticator.forget_cutoff(vendor)

    async def sync(self, store: Store, vendors: Mapping[str, VendorConfig]) -> list[str]:
        """Record every vendor's fingerprint; returns the vendors whose JWTs were cut."""
        cut: list[str] = []
        for name, vendor in vendors.items():
            secret = vendor.client_secret or None
            memo = hashlib.sha256((secret or "").encode()).hexdigest()
            record = await store.get_vendor_auth(name)
            stored = record.secret_fingerprint if record is not None else None
            if stored is not None and self._seen.get(name) == (memo, stored):
                continue
            if stored is not None and await asyncio.to_thread(matches, stored, secret):
                self._seen[name] = (memo, stored)
                continue
            new = await asyncio.to_thread(fingerprint, secret)
            # First sight of the vendor (a new store, a new vendor): nothing to end.
            at: datetime | None = None if stored is None else now_utc()
            await store.set_secret_fingerprint(name, new, not_before=at)
            self._seen[name] = (memo, new)
            if at is not None:
                cut.append(name)
                log_action(
                    "vendor client_secret changed: its JWTs issued before now are refused",
                    event="jwt.cut",
                    reason="client_secret",
                    vendor=name,
                )
        return cut
