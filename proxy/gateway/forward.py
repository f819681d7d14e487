"""The upstream exchange: send the signed request to the district, stream its answer back.

docs/http-api.md: method, query and body are forwarded byte for byte, the answer of
every status reaches the vendor unchanged but for rewritten ``Link``s, bodies stream with
backpressure both ways, ``upstream_timeout`` bounds the wait for the response head and each
idle read (``sock_read``), never the whole transfer.

aiohttp client errors are translated to ``proxy.errors`` in exactly one place,
``UPSTREAM_ERRORS``. Traps of this stack handled here:

* yarl re-quotes URLs unless built with ``encoded=True``; the query sent must be the query
  signed, so every upstream URL is built that way.
* aiohttp's client re-sends a request once when a reused keep-alive connection turns out to be
  closed, for PUT and DELETE too. Writes must never be sent twice, so the session's
  persistent-connection retry is switched off (``disable_connection_retry``), writes go out on
  fresh connections, and only the upstream policy (``proxy.gateway.upstream``: GETs, within
  ``upstream_timeout``) re-sends anything.
* a request body that fails while it streams upstream (over ``max_body``, or the vendor stopped
  sending) surfaces from aiohttp as a client connection error; ``UPSTREAM_ERRORS`` finds the
  vendor-side cause and raises that (413, 408) instead of blaming the district.
* TLS certificates are verified unless the district sets ``tls_verify = false``.
* the client's default 8 KB limit on a response header line is met by a district that echoes a
  long filter into four ``Link`` URLs; the limits are raised, and anything still over them is
  a 502, never a 500.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver
from yarl import URL

from proxy.compat import disable_connection_retry
from proxy.errors import (
    PayloadTooLarge,
    ProxyError,
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamResetError,
    UpstreamTimeout,
)
from proxy.gateway.pool import KeepAlivePool, PooledResponse
from proxy.sharing.policy import BodyFilter

# Response head limits for the district's answer (one header line, e.g. a Link with a long
# filter echoed in four URLs, and the number of header lines).
MAX_RESPONSE_LINE = 64 * 1024
MAX_RESPONSE_FIELD = 64 * 1024
MAX_RESPONSE_HEADERS = 256
CHUNK = 64 * 1024
#: The district's answer: from the keep-alive pool (bodiless GETs) or aiohttp's session.
Response = aiohttp.ClientResponse | PooledResponse


def new_pool() -> KeepAlivePool:
    """The keep-alive pool for bodiless GETs, with the session's head limits and keep-alive."""
    return KeepAlivePool(
        keepalive=15,
        max_line_size=MAX_RESPONSE_LINE,
        max_field_size=MAX_RESPONSE_FIELD,
        max_headers=MAX_RESPONSE_HEADERS,
    )


def new_session(
    *, fresh_connections: bool = False, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """An upstream client session. Reads share pooled keep-alive connections; writes use a
    session with ``fresh_connections``, so a PUT/POST/DELETE never meets a pooled connection
    that the district closed meanwhile (which could only end in a 502, since writes are never
    re-sent). ``resolver``: the intake's pinned resolver (``proxy.connections.addresses``)."""
    connector = aiohttp.TCPConnector(
        resolver=resolver,
        limit=0,
        ttl_dns_cache=60,
        enable_cleanup_closed=True,
        keepalive_timeout=None if fresh_connections else 15,
        force_close=fresh_connections,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        max_line_size=MAX_RESPONSE_LINE,
        max_field_size=MAX_RESPONSE_FIELD,
        max_headers=MAX_RESPONSE_HEADERS,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )
    disable_connection_retry(session)
    return session


class _UpstreamErrors:
    """Translate aiohttp client errors into the proxy's 502/504 errors (the one place).

    A plain class rather than ``@contextmanager``: it is entered on every upstream read of
    the hot path, and one shared instance costs no generator per use."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or isinstance(exc, ProxyError):
            return False
        if isinstance(exc, aiohttp.ClientError):
            inbound = _vendor_side_cause(exc)
            raise (inbound if inbound is not None else _translate(exc)) from exc
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout("the district did not answer in time") from exc
        return False


#: ``with UPSTREAM_ERRORS:`` around any await on the district (one shared instance).
UPSTREAM_ERRORS = _UpstreamErrors()


def _vendor_side_cause(exc: BaseException) -> ProxyError | None:
    """The proxy's own refusal of the request body (413, 408) that made aiohttp's body writer
    fail, if that is what happened."""
    seen: BaseException | None = exc
    for _ in range(8):  # cause chains are short; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, ProxyError) and not isinstance(seen, UpstreamError | UpstreamTimeout):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


_Kinds = type[Exception] | tuple[type[Exception], ...]
#: aiohttp client error -> the proxy's error, the first that matches (a subclass before its
#: base: a certificate error is a connector error, a connector error an OS error).
_TRANSLATIONS: tuple[tuple[_Kinds, type[ProxyError], str], ...] = (
    ((aiohttp.ConnectionTimeoutError, aiohttp.ServerTimeoutError), UpstreamTimeout,
     "the district did not answer in time"),
    (aiohttp.ClientConnectorCertificateError, UpstreamConnectError,
     "the district's TLS certificate was not accepted"),
    (aiohttp.ClientConnectorError, UpstreamConnectError, "the district could not be reached"),
    (aiohttp.ServerDisconnectedError, UpstreamResetError, "the district closed the connection"),
    (aiohttp.ClientResponseError, UpstreamBadResponse, "the district sent an unusable response"),
    (aiohttp.ClientPayloadError, UpstreamResetError, "the district broke off its response"),
    (aiohttp.ClientOSError, UpstreamResetError, "the district connection failed"),
)  # fmt: skip


def _translate(exc: aiohttp.ClientError) -> ProxyError:
    for kinds, error, description in _TRANSLATIONS:
        if isinstance(exc, kinds):
            return error(description)
    return UpstreamBadResponse("the district exchange failed")


@dataclass(slots=True)
class Outgoing:
    """One upstream request; ``headers`` are rebuilt per attempt by ``sign`` (new nonce)."""

    method: str
    url: str  # absolute, raw (already encoded exactly as the vendor sent it)
    base_headers: list[tuple[str, str]]
    body: bytes | AsyncIterator[bytes] | None


async def counted_body(stream: aiohttp.StreamReader, limit: int) -> AsyncIterator[bytes]:
    """Stream a request body upstream, refusing it once it passes ``limit`` bytes."""
    seen = 0
    async for chunk in stream.iter_chunked(CHUNK):
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        yield chunk


async def send(
    session: aiohttp.ClientSession,
    out: Outgoing,
    headers: list[tuple[str, str]],
    timeout: float,
    *,
    verify: bool = True,
) -> Response:
    """One attempt; errors translated. ``verify=False`` (a district's ``tls_verify = false``)
    is the only way certificate checks are skipped."""
    with UPSTREAM_ERRORS:
        return await start(session, out, headers, timeout, verify=verify)


def start(
    session: aiohttp.ClientSession,
    out: Outgoing,
    headers: list[tuple[str, str]],
    timeout: float,
    *,
    verify: bool = True,
    pool: KeepAlivePool | None = None,
) -> Awaitable[Response]:
    """``send`` without the error translation and without a coroutine of its own, for a
    caller on the hot path that awaits it inside ``UPSTREAM_ERRORS`` itself. A GET without a
    body goes through ``pool`` when there is one (``proxy.gateway.pool``: the same bytes on the wire
    and the same errors, without aiohttp's per-request client machinery)."""
    if pool is not None and out.body is None and out.method == "GET":
        return pool.get(out.url, headers, timeout, verify=verify)
    return session.request(
        out.method,
        URL(out.url, encoded=True),
        headers=headers,
        data=out.body,
        allow_redirects=False,
        timeout=_client_timeout(timeout),
        compress=None,
        chunked=None,
        # SECURITY: True is aiohttp's full verification (default CA bundle, hostname).
        ssl=True if verify else False,
    )


@functools.lru_cache(maxsize=256)
def _client_timeout_cached(tenths: int) -> aiohttp.ClientTimeout:
    timeout = tenths / 10
    return aiohttp.ClientTimeout(
        total=None, sock_connect=timeout, sock_read=timeout, connect=timeout
    )


def _client_timeout(timeout: float) -> aiohttp.ClientTimeout:
    """``upstream_timeout`` (or what is left of it for a retry) as aiohttp's timeout, rounded
    up to a tenth of a second so the few distinct values are built once."""
    return _client_timeout_cached(max(1, math.ceil(timeout * 10)))


async def stream_back(
    upstream: Response,
    downstream: web.StreamResponse,
    request: web.Request,
    on_bytes: Callable[[int], None],
    hrefs: BodyFilter | None = None,
) -> None:
    """Copy the district's body to the vendor chunk by chunk; ``write`` awaits the vendor's
    socket draining, which is the backpressure that keeps memory flat. With ``hrefs`` (the
    sharing policy of a JSON answer, and a district's ``rewrite_hrefs``) each chunk passes
    through that filter on the way.

    Only the reads are translated into district errors: aiohttp reports a vendor that hung up
    with a client-error class too, and that must not count as the district's fault."""
    content = upstream.content
    if hrefs is not None:
        await _stream_rewritten(content, downstream, on_bytes, hrefs)
        return
    while True:
        with UPSTREAM_ERRORS:
            chunk = await content.readany()
        if not chunk:
            break
        await downstream.write(chunk)
        on_bytes(len(chunk))
    await downstream.write_eof()


async def _stream_rewritten(
    content: aiohttp.StreamReader,
    downstream: web.StreamResponse,
    on_bytes: Callable[[int], None],
    hrefs: BodyFilter,
) -> None:
    # A loop of its own, so that districts without rewrite_hrefs keep the plain copy.
    while True:
        with UPSTREAM_ERRORS:
            chunk = await content.readany()
        if not chunk:
            break
        out = hrefs.feed(chunk)
        if out:
            await downstream.write(out)
            on_bytes(len(out))
    tail = hrefs.close()
    if tail:
        await downstream.write(tail)
        on_bytes(len(tail))
    await downstream.write_eof()
