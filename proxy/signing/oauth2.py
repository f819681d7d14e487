"""OAuth2 client-credentials bearer tokens for OneRoster districts (RFC 6749 §4.4).

OneRoster 1.2 districts (and some 1.1 ones) take ``Authorization: Bearer <token>``, where the
token comes from the district's ``token_url`` with the client-credentials grant:

- §4.4.2  ``POST token_url`` with ``grant_type=client_credentials`` and ``scope`` (the full
  OneRoster scope URIs, space-separated, §3.3) in a form body;
- §2.3.1  the client authenticates with HTTP Basic, client id and secret each form-urlencoded
  before they are joined with ``:`` and base64-encoded;
- §5.1    the answer is JSON with ``access_token``, ``token_type`` (bearer) and usually
  ``expires_in``; §5.2 errors carry an ``error`` code.

``OAuth2TokenSource`` caches one token per (district, credentials, scopes) until shortly before
it expires, fetches under a lock that re-checks inside it so that a burst of requests meeting
an expired token makes one fetch (single flight), and drops a token the district refused with
401 unless another task has already replaced it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote_plus, urlsplit

import aiohttp

from proxy.bodies import read_up_to
from proxy.errors import UpstreamTokenError, UpstreamTokenTimeout

__all__ = ["OAuth2TokenSource", "basic_credentials"]

# expires_in is only RECOMMENDED (RFC 6749 §5.1); without it, assume an hour, the usual
# lifetime, and rely on a district 401 to replace the token earlier if need be.
DEFAULT_LIFETIME: Final = 3600.0
# A token answer is a few hundred bytes; a district that sends megabytes is broken or hostile.
MAX_TOKEN_RESPONSE: Final = 64 * 1024
# §5.2 error codes, the only part of an error answer repeated in our own error description.
_OAUTH_ERRORS: Final = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)


def basic_credentials(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` value of RFC 6749 §2.3.1: Basic base64(enc(id) ":" enc(secret)),
    each part encoded as ``application/x-www-form-urlencoded`` so ``:`` and non-ASCII survive."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


class OAuth2TokenSource:
    """Bearer tokens for one district connection, fetched with client credentials and cached.

    ``session_factory`` returns the ``aiohttp.ClientSession`` to fetch with; it is borrowed
    (its owner closes it) and asked for again at every fetch. Without it, the source opens a
    session of its own on first use and ``close`` closes it.
    """

    def __init__(
        self,
        token_url: str,
        key: str,
        secret: str,
        scopes: list[str],
        *,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        timeout: float = 30.0,
        refresh_margin: float = 60.0,
        on_fetch: Callable[[], None] | None = None,
    ) -> None:
        self._token_url = token_url
        self._authorization = basic_credentials(key, secret)
        form = "grant_type=client_credentials"
        if scopes:
            form += "&scope=" + quote_plus(" ".join(scopes), safe="")
        self._form = form.encode("ascii")
        self._session_factory = session_factory
        self._own_session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._refresh_margin = refresh_margin
        self._on_fetch = on_fetch
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0  # time.monotonic() after which the token is not handed out
        # Named in error descriptions: scheme, host, port and path, never userinfo or a query
        # (the port tells an operator which of a host's services is meant).
        parts = urlsplit(token_url)
        host = parts.netloc.rpartition("@")[2]
        self._endpoint = f"{parts.scheme}://{host}{parts.path}"

    def __repr__(self) -> str:
        # SECURITY: no key, secret or token in a repr that may reach a log line.
        return f"OAuth2TokenSource({self._endpoint!r})"

    async def token(self) -> str:
        """A valid access token: the cached one, or one fetched now (one fetch for all the
        tasks that ask while it is under way). Raises UpstreamTokenError (502), or
        UpstreamTokenTimeout (504) when the endpoint does not answer within the timeout."""
        token = self._valid()
        if token is not None:
            return token
        async with self._lock:
            # Another task may have fetched while this one waited for the lock.
            token = self._valid()
            if token is not None:
                return token
            return await self._fetch()

    async def invalidate(self, token: str) -> None:
        """Forget ``token`` after the district refused it (401), unless it is no longer the
        current one: then another task has already fetched its replacement."""
        if token == self._token:
            self._token = None
            self._refresh_at = 0.0

    async def close(self) -> None:
        """Forget the token and close the session this source opened itself, if any."""
        self._token = None
        self._refresh_at = 0.0
        session, self._own_session = self._own_session, None
        if session is not None:
            await session.close()

    def _valid(self) -> str | None:
        if self._token is not None and time.monotonic() < self._refresh_at:
            return self._token
        return None

    def _session(self) -> aiohttp.ClientSession:
        if self._session_factory is not None:
            return self._session_factory()
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession()
        return self._own_session

    async def _fetch(self) -> str:
        if self._on_fetch is not None:
            self._on_fetch()
        started = time.monotonic()
        headers = {
            "Authorization": self._authorization,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            # The shared upstream session does not decompress; a token answer is tiny anyway.
            "Accept-Encoding": "identity",
        }
        where = f"district token endpoint {self._endpoint}"
        try:
            async with self._session().post(
                self._token_url,
                data=self._form,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await read_up_to(response.content, MAX_TOKEN_RESPONSE + 1)
                status = response.status
        except TimeoutError as exc:
            raise UpstreamTokenTimeout(f"{where} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamTokenError(
                f"{where} could not be reached ({type(exc).__name__})"
            ) from exc
        except ValueError as exc:
            # aiohttp refuses some URLs before connecting (credentials in token_url, say).
            raise UpstreamTokenError(f"{where} cannot be requested ({type(exc).__name__})") from exc
        if len(raw) > MAX_TOKEN_RESPONSE:
            raise UpstreamTokenError(f"{where} answered with an oversized body")
        payload = _json_object(raw)
        if not 200 <= status < 300:
            error = payload.get("error") if payload is not None else None
            detail = f" ({error})" if error in _OAUTH_ERRORS else ""
            raise UpstreamTokenError(f"{where} answered HTTP {status}{detail}")
        if payload is None:
            raise UpstreamTokenError(f"{where} answered with something other than a JSON object")
        access_token = payload.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamTokenError(f"{where} answered without an access_token")
        token_type = payload.get("token_type")
        # §7.1: a client must not use a token of a type it does not understand.
        if token_type is not None and str(token_type).lower() != "bearer":
            raise UpstreamTokenError(f"{where} issued a token that is not a bearer token")
        lifetime = _lifetime(payload.get("expires_in"))
        if lifetime is None:
            raise UpstreamTokenError(f"{where} answered with an invalid expires_in")
        # Hand the token out until refresh_margin before it expires, or until 90% of its
        # lifetime when that lifetime is short, counted from when the request left.
        margin = min(self._refresh_margin, lifetime / 10)
        self._token = access_token
        self._refresh_at = started + lifetime - margin
        return access_token


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return payload if isinstance(payload, dict) else None


def _lifetime(expires_in: object) -> float | None:
    """Seconds the token lives (RFC 6749 §5.1 ``expires_in``), or None if unusable. Some servers
    send it as a string; booleans and negative or non-finite numbers are refused."""
    if expires_in is None:
        return DEFAULT_LIFETIME
    if isinstance(expires_in, bool):
        return None
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            return None
    if not isinstance(expires_in, (int, float)):
        return None
    seconds = float(expires_in)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
