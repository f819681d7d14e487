"""Console sessions and CSRF tokens (docs/http-api.md; OWASP CSRF Prevention Cheat Sheet).

Signing in with the admin token gives a session cookie ``orp_console``:
``<expires>.<nonce>.<mac>``, where ``mac`` is HMAC-SHA256 over ``<expires>.<nonce>`` with a
key derived from the admin token; the store keeps each live session (a hash of its nonce), so
"Sign out" ends it on every replica and a restart does not revive it, and changing ``[admin]
token`` ends every session everywhere. The cookie is HttpOnly and SameSite=Strict. When
``[server] public_url`` is https it is Secure and named with the ``__Host-`` prefix
(``Path=/``, no Domain: RFC 6265bis §4.1.3.2), so no sibling host can set or shadow it; on
plain http (a loopback laptop) browsers refuse Secure cookies, so it is ``orp_console`` with
``Path=/console/``.

CSRF: the token of a signed-in form is an HMAC of the session nonce (the synchroniser-token
pattern without server state). Before sign-in, and on the intake page where there is no
session, a random value is set both as an HttpOnly SameSite=Strict cookie and as the form's
hidden field (double-submit cookie); a POST whose field does not match is 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from proxy.store.base import SessionStore

COOKIE = "orp_console"
CSRF_COOKIE = "orp_console_csrf"
LIFETIME = 12 * 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: float

    def csrf(self, key: bytes) -> str:
        return hmac.new(key, b"csrf:" + self.nonce.encode(), hashlib.sha256).hexdigest()[:40]


def session_key(admin_token: str) -> bytes:
    """The console's signing key: derived, so the admin token itself is never an HMAC key
    that a cookie could be checked against offline with a known message."""
    return hmac.new(admin_token.encode(), b"oneroster-proxy console v1", hashlib.sha256).digest()


class Sessions:
    """Issues and checks session cookies. Every session is kept in the store (its id is the
    SHA-256 of its nonce), so "Sign out" ends it for every replica and worker, and a restart
    does not bring it back (docs/http-api.md "Console")."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    async def issue(self, key: bytes, store: SessionStore) -> tuple[str, Session]:
        session = Session(nonce=secrets.token_urlsafe(24), expires=self._clock() + LIFETIME)
        body = f"{int(session.expires)}.{session.nonce}"
        await store.add_session(session_id(session), _utc(session.expires))
        return f"{body}.{_mac(key, body)}", session

    async def check(self, key: bytes, cookie: str | None, store: SessionStore) -> Session | None:
        if not cookie or cookie.count(".") != 2:
            return None
        expires_text, nonce, mac = cookie.split(".")
        body = f"{expires_text}.{nonce}"
        # SECURITY: constant-time comparison of the MAC before anything else is trusted.
        if not hmac.compare_digest(
            mac.encode("utf-8", "surrogateescape"), _mac(key, body).encode()
        ):
            return None
        if not expires_text.isdigit() or int(expires_text) <= self._clock():
            return None
        session = Session(nonce=nonce, expires=float(expires_text))
        if not await store.session_active(session_id(session), _utc(self._clock())):
            return None  # signed out (here or on another replica), or from before a restart
        return session

    async def sign_out(self, session: Session, store: SessionStore) -> None:
        await store.end_session(session_id(session))


def session_id(session: Session) -> str:
    """What the store keeps of a session: a hash of its nonce, so a copy of the store holds
    nothing a cookie could be made from."""
    return hashlib.sha256(session.nonce.encode()).hexdigest()


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF values; a missing one never matches."""
    if not a or not b:
        return False
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )
