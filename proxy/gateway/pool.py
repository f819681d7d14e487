"""Keep-alive GETs to districts without aiohttp's per-request client machinery.

docs/http-api.md: every vendor GET becomes one GET to the district, on a pooled
keep-alive connection (RFC 9112 §9.3). ``aiohttp.ClientSession.request`` spends most of its
time per request on what such a forward never needs: merging session defaults, a
``ClientRequest`` and a ``ClientResponse`` with cookies, auth, proxies, redirects, traces and
a total-timeout handle, a header multidict rebuilt twice (~70 µs of CPU here, against ~18 µs
for the exchange itself). A GET with no body needs: a pooled connection to the district's
origin, the request head in one write, and the answer read by aiohttp's own response protocol
(``ResponseHandler``: the C HTTP parser with our head limits, the ``sock_read`` timeout, flow
control for backpressure, the same error classes). So ``KeepAlivePool`` keeps that protocol and
drops the rest; ``proxy.gateway.forward.UPSTREAM_ERRORS`` translates what it raises exactly as
before. Writes, bodies and every other client of the district (OAuth2 tokens, ``check``) stay on
aiohttp's session.

What the district receives is byte for byte what aiohttp sends for the same request (``Host``
first, the headers in order, ``Accept: */*`` when there is no ``Accept``); a test compares the
two heads. A pooled connection is used by one request at a time, goes back to the pool only
when its answer was read to the end and neither side asked to close, and is closed after
``keepalive`` idle seconds. Nothing is ever re-sent here: retries are the upstream policy's.
``ResponseHandler`` is private to aiohttp: ``proxy.compat`` checks the version it was tested
with and says what it saves.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import http
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.compat import ResponseHandler
from proxy.errors import UpstreamBadResponse, UpstreamConnectError, UpstreamTimeout

READ_BUFSIZE = 2**16


class _Origin:
    """One district origin (scheme, host, port), parsed once: where to connect, what ``Host``
    aiohttp would send, and where the request target starts in a URL of this origin."""

    __slots__ = ("host", "host_header", "idle", "port", "tls")

    def __init__(self, origin: str) -> None:
        url = URL(origin, encoded=True)
        if url.scheme not in ("http", "https") or not url.raw_host or url.port is None:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.tls = url.scheme == "https"
        self.host: str = url.raw_host
        self.port: int = url.port
        self.host_header: str = url.host_port_subcomponent or self.host
        self.idle: list[tuple[float, ResponseHandler]] = []


class PooledResponse:
    """The district's answer on a pooled connection: the part of ``aiohttp.ClientResponse``
    the gateway reads (status, reason, headers, content_length, content, read, release)."""

    __slots__ = ("_origin", "_pool", "_proto", "content", "headers", "reason", "status")

    def __init__(
        self,
        pool: KeepAlivePool,
        origin: _Origin,
        proto: ResponseHandler,
        message: Any,
        payload: Any,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._proto: ResponseHandler | None = proto
        self.status: int = message.code
        self.reason: str = message.reason
        self.headers: CIMultiDictProxy[str] = message.headers
        self.content = payload  # aiohttp.StreamReader, with the protocol's flow control

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value else None

    async def read(self) -> bytes:
        """The whole body; the connection then goes back to the pool."""
        try:
            body: bytes = await self.content.read()
        except BaseException:
            self.close()
            raise
        self.release()
        return body

    def release(self) -> None:
        """Done with the answer: the connection is pooled if it was read to the end and may
        be kept, closed otherwise."""
        proto, self._proto = self._proto, None
        if proto is None:
            return
        if self.content.is_eof() and not proto.should_close and proto.is_connected():
            self._pool._put(self._origin, proto)
        else:
            proto.close()

    def close(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.close()


class KeepAlivePool:
    """Pooled keep-alive connections per district origin, for bodiless GETs."""

    def __init__(
        self,
        *,
        keepalive: float = 15.0,
        max_line_size: int = 8190,
        max_field_size: int = 8190,
        max_headers: int = 128,
    ) -> None:
        self.keepalive = keepalive
        self._max_line = max_line_size
        self._max_field = max_field_size
        self._max_headers = max_headers
        self._origins: dict[tuple[str, bool], _Origin] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self.closed = False

    async def get(
        self,
        url: str,
        headers: Iterable[tuple[str, str]],
        timeout: float,
        *,
        verify: bool = True,
        method: str = "GET",
    ) -> PooledResponse:
        """Send ``method url`` (absolute, already encoded as it must go out) with ``headers``
        and wait up to ``timeout`` for connecting and for each read of the answer's head."""
        origin_text, target = _split(url)
        # SECURITY: a connection made without certificate checks (tls_verify = false) is never
        # handed to a request that wants them: the pool is keyed by both.
        key = (origin_text, verify)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(origin_text)
        head = _head(method, target, origin.host_header, headers)
        proto = self._idle(origin)
        if proto is None:
            proto = await self._connect(origin, timeout, verify)
        proto.set_response_params(
            skip_payload=method == "HEAD",
            read_until_eof=True,
            auto_decompress=False,
            read_timeout=timeout,
            read_bufsize=READ_BUFSIZE,
            max_line_size=self._max_line,
            max_field_size=self._max_field,
            max_headers=self._max_headers,
        )
        try:
            assert proto.transport is not None
            proto.transport.write(head)
            proto.start_timeout()
            while True:
                message, payload = await proto.read()
                # 1xx answers are interim (RFC 9110 §15.2): the final one follows.
                if message.code < 100 or message.code > 199 or message.code == 101:
                    break
        except http.HttpProcessingError as exc:
            proto.close()
            raise UpstreamBadResponse("the district sent an unusable response") from exc
        except BaseException:
            proto.close()  # half an exchange (or a cancelled one) never goes back to the pool
            raise
        return PooledResponse(self, origin, proto, message, payload)

    def _idle(self, origin: _Origin) -> ResponseHandler | None:
        idle = origin.idle
        now = time.monotonic()
        while idle:
            since, proto = idle.pop()
            if now - since < self.keepalive and proto.is_connected() and not proto.should_close:
                return proto
            proto.close()
        return None

    async def _connect(self, origin: _Origin, timeout: float, verify: bool) -> ResponseHandler:
        if self.closed:
            raise RuntimeError("the upstream pool is closed")
        loop = asyncio.get_running_loop()
        context = self._context(verify) if origin.tls else None
        try:
            async with asyncio.timeout(timeout):
                _, proto = await loop.create_connection(
                    lambda: ResponseHandler(loop),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamConnectError("the district's TLS certificate was not accepted") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout("the district did not answer in time") from exc
        except OSError as exc:
            raise UpstreamConnectError("the district could not be reached") from exc
        return proto

    def _context(self, verify: bool) -> ssl.SSLContext:
        context = self._contexts.get(verify)
        if context is None:
            context = ssl.create_default_context()
            if not verify:
                # SECURITY: only for a district configured with tls_verify = false.
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._contexts[verify] = context
        return context

    def _put(self, origin: _Origin, proto: ResponseHandler) -> None:
        if self.closed:
            proto.close()
            return
        origin.idle.append((time.monotonic(), proto))
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.keepalive, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for ``keepalive`` seconds (the district's fds are not ours
        to hold for ever); runs while any connection is idle."""
        self._sweeper = None
        now = time.monotonic()
        left = False
        for origin in self._origins.values():
            keep = []
            for since, proto in origin.idle:
                if now - since < self.keepalive and proto.is_connected():
                    keep.append((since, proto))
                else:
                    proto.close()
            origin.idle = keep
            left = left or bool(keep)
        if left:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive / 2, self._sweep)

    async def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for origin in self._origins.values():
            for _, proto in origin.idle:
                proto.close()
            origin.idle = []


def _split(url: str) -> tuple[str, str]:
    """``http://host:port/path?query`` -> (``http://host:port``, ``/path?query``)."""
    start = url.find("//")
    end = url.find("/", start + 2) if start >= 0 else -1
    if end < 0:
        query = url.find("?", start + 2)
        if query < 0:
            return url, "/"
        return url[:query], "/" + url[query:]
    return url[:end], url[end:]


def _head(method: str, target: str, host: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request head as aiohttp writes it: ``Host`` first (unless given), the headers in
    order, ``Accept: */*`` when there is none."""
    lines = [f"{method} {target} HTTP/1.1", ""]
    has_accept = False
    for name, value in headers:
        # SECURITY: a CR or LF would end the header early and start one of the sender's own
        # (request smuggling); aiohttp refuses them the same way.
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError("newline or carriage return in an upstream header")
        lower = name.lower()
        if lower == "host":
            host = value  # aiohttp writes a given Host in place of its own, first
            continue
        if lower == "accept":
            has_accept = True
        lines.append(f"{name}: {value}")
    lines[1] = f"Host: {host}"
    if not has_accept:
        lines.append("Accept: */*")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


__all__ = ["KeepAlivePool", "PooledResponse"]
