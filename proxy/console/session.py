"""Console sessions and CSRF tokens (docs/http-api.md; OWASP CSRF Prevention Cheat Sheet).

Signing in with the admin token gives a session cookie ``orp_console``:
``<expires>.<nonce>.<mac>``, where ``mac`` is HMAC-SHA256 over ``<expires>.<nonce>`` with a
key derived from the admin token. Nothing is kept server-side except the nonces of sessions
signed out in this process, so every replica and the ``--workers`` supervisor accept the same
cookie, and changing ``[admin] token`` ends every session everywhere. The cookie is HttpOnly,
SameSite=Strict, ``Path=/console/``, and Secure when ``[server] public_url`` is https.

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

COOKIE = "orp_console"
CSRF_COOKIE = "orp_console_csrf"
LIFETIME = 12 * 3600.0
_SIGNED_OUT_MAX = 10_000


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
    """Issues and checks session cookies; remembers sign-outs until those sessions expire."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._signed_out: dict[str, float] = {}

    def issue(self, key: bytes) -> tuple[str, Session]:
        session = Session(nonce=secrets.token_urlsafe(24), expires=self._clock() + LIFETIME)
        body = f"{int(session.expires)}.{session.nonce}"
        return f"{body}.{_mac(key, body)}", session

    def check(self, key: bytes, cookie: str | None) -> Session | None:
        if not cookie or cookie.count(".") != 2:
            return None
        expires_text, nonce, mac = cookie.split(".")
        body = f"{expires_text}.{nonce}"
        # SECURITY: constant-time comparison of the MAC before anything else is trusted.
        if not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
            return None
        if not expires_text.isdigit() or int(expires_text) <= self._clock():
            return None
        if nonce in self._signed_out:
            return None
        return Session(nonce=nonce, expires=float(expires_text))

    def sign_out(self, session: Session) -> None:
        now = self._clock()
        if len(self._signed_out) >= _SIGNED_OUT_MAX:
            self._signed_out = {n: e for n, e in self._signed_out.items() if e > now}
        self._signed_out[session.nonce] = session.expires


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
