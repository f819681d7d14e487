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
reload) on any replica: the store holds an HMAC-SHA256 fingerprint of the secret it last saw
(RFC 2104), keyed by a key derived from ``[server] jwt_keys`` and so never in the store, and a
loaded secret that does not match it moves the cut. A copy of the store alone cannot test a
guess of the secret offline (docs/http-api.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
from collections.abc import Mapping, Sequence
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
_SCHEME = "hmac-sha256"
# What a previous version wrote: read once, at the first load after an upgrade, then replaced.
_LEGACY = "pbkdf2-sha256"
_PURPOSE = b"oneroster-proxy client_secret fingerprint"

SAME, RENEW, CHANGED = "same", "renew", "changed"


def _pepper(jwt_key: str) -> bytes:
    """The fingerprint key derived from one ``[server] jwt_keys`` entry (RFC 2104 as a KDF,
    one fixed label): never in the store, so a copy of the store gives nothing to test a
    guess against, while one HMAC per load stays cheap."""
    return hmac.new(jwt_key.encode(), _PURPOSE, hashlib.sha256).digest()


def _key_id(pepper: bytes) -> str:
    return _b64(hashlib.sha256(pepper).digest())[:8]


def fingerprint(secret: str | None, keys: Sequence[str]) -> str:
    """``hmac-sha256$<key id>$<digest>`` of ``secret`` under the first of ``keys`` (the
    ``[server] jwt_keys``), or ``none``."""
    if not secret:
        return NO_SECRET
    if not keys:
        raise ValueError("a client_secret fingerprint needs server.jwt_keys")
    pepper = _pepper(keys[0])
    digest = hmac.new(pepper, secret.encode(), hashlib.sha256).digest()
    return f"{_SCHEME}${_key_id(pepper)}${_b64(digest)}"


def compare(stored: str, secret: str | None, keys: Sequence[str]) -> str:
    """``SAME`` when ``stored`` is ``fingerprint(secret, keys)``; ``RENEW`` when it is the
    fingerprint of ``secret`` in an older form (another of ``keys``, or the PBKDF2 of a
    previous version): the same secret, to be recorded again without a cut; else ``CHANGED``.
    Digests are compared in constant time."""
    if not secret or stored == NO_SECRET:
        return SAME if not secret and stored == NO_SECRET else CHANGED
    try:
        scheme, *rest = stored.split("$")
        if scheme == _SCHEME:
            kid, digest = rest
            for index, key in enumerate(keys):
                pepper = _pepper(key)
                again = _b64(hmac.new(pepper, secret.encode(), hashlib.sha256).digest())
                if hmac.compare_digest(again, digest):
                    return SAME if index == 0 and _key_id(pepper) == kid else RENEW
            return CHANGED
        if scheme == _LEGACY:
            rounds, salt, digest = rest
            legacy = hashlib.pbkdf2_hmac("sha256", secret.encode(), _unb64(salt), int(rounds))
            return RENEW if hmac.compare_digest(_b64(legacy), digest) else CHANGED
    except ValueError:  # a fingerprint this version cannot read counts as a change
        return CHANGED
    return CHANGED


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
        self,
        store: Store,
        vendors: Mapping[str, VendorConfig],
        authenticator: _Authenticator,
        keys: Sequence[str],
    ) -> None:
        """``sync``, for a load or reload: a store outage defers the comparison (``pending``)
        instead of failing the load; a vendor cut here is refused at once by this process."""
        try:
            cut = await self.sync(store, vendors, keys)
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

    async def sync(
        self, store: Store, vendors: Mapping[str, VendorConfig], keys: Sequence[str]
    ) -> list[str]:
        """Record every vendor's fingerprint; returns the vendors whose JWTs were cut."""
        cut: list[str] = []
        for name, vendor in vendors.items():
            secret = vendor.client_secret or None
            memo = hashlib.sha256((secret or "").encode()).hexdigest()
            record = await store.get_vendor_auth(name)
            stored = record.secret_fingerprint if record is not None else None
            if stored is not None and self._seen.get(name) == (memo, stored):
                continue
            if stored is None:
                verdict = CHANGED
            elif stored.startswith(_LEGACY):  # PBKDF2: slow on purpose, off the loop
                verdict = await asyncio.to_thread(compare, stored, secret, keys)
            else:
                verdict = compare(stored, secret, keys)
            if verdict == SAME:
                self._seen[name] = (memo, stored or "")
                continue
            new = fingerprint(secret, keys)
            # First sight of the vendor (a new store, a new vendor), or the same secret in an
            # older form: nothing to end.
            at: datetime | None = None if stored is None or verdict == RENEW else now_utc()
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
