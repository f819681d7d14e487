"""Vendor access tokens: ``orp_<id>_<secret>``, stored as a hash of the secret.

docs/commands.md: ``<id>`` is 12 characters of ``[a-z0-9]``, ``<secret>`` at least 32
random bytes in base64url. The store keeps SHA-256 of the secret: the secret has 256 bits of
entropy, so a slow password hash would add latency and no strength.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.logs import log_action
from proxy.store.base import AuditEvent, Store, TokenRecord

PREFIX = "orp_"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN_RE = re.compile(r"orp_([a-z0-9]{12})_([A-Za-z0-9_-]{43,128})")
ID_RE = re.compile(r"[a-z0-9]{12}")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    record: TokenRecord


def now_utc() -> datetime:
    return datetime.now(UTC)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed opaque token, else None."""
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    return match.group(1), match.group(2)


def secret_matches(record: TokenRecord, secret: str) -> bool:
    # SECURITY: constant-time comparison of hashes; the id alone must never authenticate.
    return hmac.compare_digest(record.secret_hash, hash_secret(secret))


def new_id() -> str:
    """12 random characters of ``[a-z0-9]``: an opaque token's id, a JWT's ``jti``."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def new_token(
    vendor: str, *, ttl: timedelta | None = None, at: datetime | None = None
) -> IssuedToken:
    at = at or now_utc()
    token_id = new_id()
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    token = f"{PREFIX}{token_id}_{secret}"
    record = TokenRecord(
        id=token_id,
        vendor=vendor,
        secret_hash=hash_secret(secret),
        prefix=f"{PREFIX}{token_id}_{secret[:4]}",
        created=at,
        expires=at + ttl if ttl is not None else None,
    )
    return IssuedToken(token=token, record=record)


async def issue(store: Store, vendor: str, *, ttl: timedelta | None, interface: str) -> IssuedToken:
    issued = new_token(vendor, ttl=ttl)
    detail = {"ttl_seconds": ttl.total_seconds() if ttl else None}
    # The token and its audit event in one store write: both are kept or neither.
    event = _event(
        "token.issue", issued.record.created, interface, vendor, detail, issued.record.id
    )
    await store.add_token(issued.record, audit=event)
    log_action(
        "token issued",
        event="token.issue",
        interface=interface,
        vendor=vendor,
        token_id=issued.record.id,
        expires=iso_utc(issued.record.expires),
    )
    return issued


class Inherit:
    """The ``ttl`` of ``rotate`` when none is given: the newest token's."""


INHERIT = Inherit()


async def rotate(
    store: Store,
    vendor: str,
    *,
    grace: timedelta,
    interface: str,
    ttl: timedelta | Inherit | None = INHERIT,
) -> tuple[IssuedToken, list[str]]:
    """A new token for ``vendor``; every older one ends when ``grace`` has passed. Without
    ``ttl`` the new token lives as long as the vendor's newest token was issued to live (a
    90-day token rotates into a 90-day token, a token that never expires into another).

    No grace (``0s``) ends everything the vendor held at once, its JWTs too: they move the
    vendor's JWT "not before" (``proxy.gateway.jwt_cutoff``), as ``revoke_all`` does. With a
    grace, JWTs run to their own ``exp`` (``[server] jwt_ttl``)."""
    if isinstance(ttl, Inherit):
        ttl = await newest_ttl(store, vendor)
    issued = new_token(vendor, ttl=ttl)
    record = issued.record
    until = record.created + grace
    cut = grace <= timedelta(0)
    # What the expiry below will end (for the audit event, written with the new token).
    ending = [
        r.id
        for r in await store.list_tokens(vendor)
        if r.revoked is None and (r.expires is None or r.expires > until)
    ]
    detail = {
        "grace_seconds": grace.total_seconds(),
        "ttl_seconds": ttl.total_seconds() if ttl else None,
        "ending": ending,
        "jwts_issued_before": iso_utc(record.created) if cut else None,
    }
    # The new token and its audit event in one store write: both are kept or neither.
    event = _event("token.rotate", record.created, interface, vendor, detail, record.id)
    await store.add_token(record, audit=event)
    if cut:
        # SECURITY: "0s" is what an operator types after a leak; a JWT fetched with the
        # vendor's client secret must end with the opaque tokens, not an hour later.
        await store.set_jwt_not_before(vendor, record.created)
    ended = await store.expire_vendor(vendor, until, keep=record.id)
    log_action(
        "token rotated",
        event="token.rotate",
        interface=interface,
        vendor=vendor,
        token_id=record.id,
        grace_s=grace.total_seconds(),
        expires=iso_utc(record.expires),
        ending=ended,
    )
    return issued, ended


async def newest_ttl(store: Store, vendor: str) -> timedelta | None:
    """The lifetime the vendor's newest token was issued with (None: never expires)."""
    records = await store.list_tokens(vendor)
    if not records:
        return None
    newest = records[-1]  # oldest first
    return None if newest.expires is None else newest.expires - newest.created


class TokenReferenceError(ValueError):
    """A ``tokens revoke`` argument that names no token, or more than one. The message never
    repeats more of a token than its listed prefix."""


class AmbiguousTokenReference(TokenReferenceError):
    """A prefix that more than one token starts with."""


# What ``tokens list`` shows as ``prefix``, or the start of it: ``orp_<id>_`` + <= 4 chars.
_PREFIX_START_RE = re.compile(r"orp_[a-z0-9]{0,12}(_[A-Za-z0-9_-]{0,4})?")


async def resolve(store: Store, ref: str) -> TokenRecord:
    """The token that ``ref`` names: its 12-character id, the whole token, or its listed
    ``prefix`` (or a unique start of it). TokenReferenceError otherwise."""
    parsed = parse_token(ref)
    if parsed is not None:
        record = await store.get_token(parsed[0])
        # SECURITY: a whole token counts only if its secret matches; never echo it.
        if record is None or not secret_matches(record, parsed[1]):
            raise TokenReferenceError("that token is not one this proxy issued")
        return record
    if ID_RE.fullmatch(ref):
        record = await store.get_token(ref)
        if record is None:
            raise TokenReferenceError(f"no token with id {ref}")
        return record
    if _PREFIX_START_RE.fullmatch(ref) and len(ref) > len(PREFIX):
        matching = [r for r in await store.list_tokens() if r.prefix.startswith(ref)]
        if len(matching) == 1:
            return matching[0]
        if not matching:
            raise TokenReferenceError(f"no token with a prefix starting {ref}")
        ids = ", ".join(r.id for r in matching[:10]) + (", ..." if len(matching) > 10 else "")
        raise AmbiguousTokenReference(
            f"prefix {ref} is ambiguous: {len(matching)} tokens start with it ({ids}); "
            "give the whole prefix or the id"
        )
    raise TokenReferenceError(
        "give a token id (12 characters), the whole token, or its prefix as 'tokens list' shows it"
    )


async def revoke(store: Store, token_id: str, *, interface: str) -> TokenRecord | None:
    """Revoke one token; None if there is none. A token revoked already is returned as it is
    (its ``revoked`` set: the caller says so) and nothing is written: no second audit event."""
    record = await store.get_token(token_id)
    if record is None or record.revoked is not None:
        return record
    at = now_utc()
    event = _event("token.revoke", at, interface, record.vendor, {}, token_id)
    if not await store.revoke_token(token_id, at, audit=event):
        await store.add_audit(event)  # revoked already: nothing changed, the request is kept
    log_action(
        "token revoked",
        event="token.revoke",
        interface=interface,
        vendor=record.vendor,
        token_id=token_id,
    )
    return record


async def revoke_all(store: Store, vendor: str, *, interface: str) -> list[str]:
    """Revoke every opaque token of ``vendor`` and end every JWT issued to it so far (its
    JWT "not before", ``proxy.gateway.jwt_cutoff``); returns the opaque tokens' ids."""
    at = now_utc()
    await store.set_jwt_not_before(vendor, at)
    # The revocations and their audit event in one store write (the store names the ids).
    detail = {"jwts_issued_before": iso_utc(at)}
    event = _event("token.revoke_all", at, interface, vendor, detail, None)
    ids = await store.revoke_vendor(vendor, at, audit=event)
    log_action(
        "vendor tokens revoked",
        event="token.revoke_all",
        interface=interface,
        vendor=vendor,
        token_ids=ids,
    )
    return ids


def _event(
    action: str,
    at: datetime,
    interface: str,
    vendor: str,
    detail: dict[str, Any],
    token_id: str | None,
) -> AuditEvent:
    return AuditEvent(
        at=at,
        action=action,
        interface=interface,
        vendor=vendor,
        token_id=token_id,
        detail=detail,
    )


def iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


LISTING_FIELDS = ("id", "vendor", "prefix", "created", "expires", "last_used")


def listing(record: TokenRecord) -> dict[str, str | None]:
    """The fields of ``tokens list --json`` and the admin API, exactly the documented ones:
    never the secret or its hash. A revoked token's ``expires`` is the moment it was revoked (when
    it stopped
    working), so the list needs no field the contract does not name."""
    expires = record.expires
    if record.revoked is not None and (expires is None or record.revoked < expires):
        expires = record.revoked
    return {
        "id": record.id,
        "vendor": record.vendor,
        "prefix": record.prefix,
        "created": iso_utc(record.created),
        "expires": iso_utc(expires),
        "last_used": iso_utc(record.last_used),
    }


def status(record: TokenRecord, now: datetime | None = None) -> str:
    """``active``, ``expired`` or ``revoked``, for the human-readable list."""
    now = now or now_utc()
    if record.revoked is not None and record.revoked <= now:
        return "revoked"
    if record.expires is not None and now >= record.expires:
        return "expired"
    return "active"
