"""Inbound limits the gateway's HTTP server enforces before any handler runs.

docs/http-api.md (statuses): 414 (request line over the proxy's limit), 431 (headers over its
limits), every refusal an imsx payload, never a 500; idle and trickling clients (slowloris,
``[server] client_timeout``) time out without tying up the proxy.

aiohttp's server refuses an oversized request line or header with a plain-text 400 from
``RequestHandler.handle_error``, outside every middleware, and it has no deadline for a request
body that stops arriving. ``GuardedAppRunner`` installs a ``RequestHandler`` subclass that:

* answers parser refusals itself, as imsx JSON with the right status: a request target over
  ``[server] max_line`` is 414; a header line over ``[server] max_headers`` bytes, or more than
  ``MAX_HEADER_COUNT`` header lines, is 431; any other malformed request is 400. The two size
  limits are told apart by the limit the parser reports, so they are kept distinct (see
  ``parser_limits``).
* answers 431 to a request whose header lines add up to more than ``MAX_HEADER_BYTES`` (the
  parser limits only each line and their number: 128 lines of 16 KB passed), before any
  handler runs: a district would close on such a head, and nothing this large is a OneRoster
  request.
* closes a connection whose request head is not complete ``client_timeout`` after the connection
  opened or the previous response ended (aiohttp's keep-alive timer, which data arriving does
  not reset: a head trickled one byte at a time still ends at the deadline).
* fails a request body that stops arriving for ``client_timeout`` (no byte while the proxy was
  ready to read) with 408 (``RequestTimeout``), which ``proxy.app.Observed`` renders as imsx; the
  connection closes after the answer instead of lingering for the rest of the body.

These reach into aiohttp internals (``handle_error``, ``_handle_request``, the reading-paused
flags), through ``proxy.compat``, which checks the aiohttp version they were tested with;
``tests/gateway/test_inbound_limits.py`` drives each path over a raw socket, so an aiohttp
upgrade that changes them fails there.
"""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from proxy.compat import RequestHandler, bad_method_line
from proxy.errors import (
    BadRequest,
    Forbidden,
    HeadersTooLarge,
    InternalError,
    ProxyError,
    RequestTimeout,
    URITooLong,
    error_response,
)

log = logging.getLogger("oneroster_proxy")

#: Header lines per request (aiohttp's own default, made explicit).
MAX_HEADER_COUNT = 128
#: All of a request's header lines together, in bytes (name, value, ": " and CRLF each).
MAX_HEADER_BYTES = 64 * 1024
#: What a header line adds besides its name and value.
_LINE_OVERHEAD = 4

#: An RFC 9110 §5.6.2 token: what a method is, known or not.
_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parser_limits(max_line: int, max_headers: int) -> dict[str, int]:
    """``handler_args`` for the parser: the request-target and header-line limits.

    The parser reports which limit a line broke only by its value, so equal limits are made
    one byte apart (the header limit grows): a refusal can then always be named 414 or 431.
    """
    field = max_headers if max_headers != max_line else max_headers + 1
    return {"max_line_size": max_line, "max_field_size": field, "max_headers": MAX_HEADER_COUNT}


def refusal(exc: BaseException | None, max_line: int, max_field: int) -> ProxyError:
    """The imsx error for an HTTP parser refusal."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == max_line:
            return URITooLong(f"request target over {max_line} bytes")
        return HeadersTooLarge(f"request header line over {max_field} bytes")
    if isinstance(exc, HttpProcessingError) and "Too many headers" in str(exc.message):
        return HeadersTooLarge(f"more than {MAX_HEADER_COUNT} request header lines")
    method = unknown_method(exc)
    if method is not None:
        # docs/http-api.md: an unknown method is outside every scope (403), not a malformed request.
        return Forbidden(f"{method} is not a OneRoster operation")
    return BadRequest("malformed HTTP request")


def unknown_method(exc: BaseException | None) -> str | None:
    """The method of a well-formed request line whose method llhttp does not know.

    aiohttp's C parser refuses methods outside its list with ``BadHttpMethod``, quoting the
    request line as a bytes literal; TLS and other junk raise the same class with a line that
    is not ``TOKEN SP target SP HTTP/x.y``, and stay 400."""
    line = bad_method_line(exc) if isinstance(exc, BadHttpMethod) else None
    parts = line.split(b" ") if line is not None else []
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]) or not parts[2].startswith(b"HTTP/"):
        return None
    return parts[0].decode("ascii")


async def _refuse_connect(request: BaseRequest) -> web.StreamResponse:
    response = error_response(Forbidden("CONNECT is not a OneRoster operation"))
    response.headers["X-Request-Id"] = uuid.uuid4().hex
    return response


def head_size(raw_headers: tuple[tuple[bytes, bytes], ...]) -> int:
    """The bytes of a request's header lines as they came: names, values, separators."""
    return sum(map(len, itertools.chain.from_iterable(raw_headers))) + _LINE_OVERHEAD * len(
        raw_headers
    )


async def _refuse_head(request: BaseRequest) -> web.StreamResponse:
    response = error_response(
        HeadersTooLarge(f"request headers over {MAX_HEADER_BYTES} bytes in total")
    )
    response.headers["X-Request-Id"] = uuid.uuid4().hex
    response.force_close()
    return response


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with imsx parser refusals and a request-body deadline."""

    client_timeout: float = 60.0
    _last_read: float = 0.0
    # The total head cap without measuring every head: bytes received since the parser last
    # completed a request head (an upper bound on the next head's size: bodies count too),
    # requests parsed (aiohttp's own count) and handled on this connection, and the last
    # parsed request whose head must be measured.
    _unmeasured: int = 0
    _handled: int = 0
    _measure_upto: int = 0

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        parsed = self._request_count
        super().data_received(data)
        size = len(data)
        if self._request_count == parsed:
            self._unmeasured += size
            return
        # One or more heads ended in this chunk; each is at most what came since the last one.
        if self._unmeasured + size > MAX_HEADER_BYTES:
            self._measure_upto = self._request_count
        # What follows them in the chunk (a body, the start of the next head) is at most all.
        self._unmeasured = size

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400:
            # 500 (an unexpected exception escaped every middleware) or 504: keep the status,
            # still answer in the one error shape. The traceback goes to the log only.
            self.log_exception("Error handling request", exc_info=exc)
            err: ProxyError = InternalError("the proxy failed to handle this request")
            err_status = status
        else:
            if not isinstance(exc, BadHttpMethod):  # TLS or junk sent to a plain-HTTP port
                log.info("refused malformed request: %s", type(exc).__name__)
            err = refusal(exc, self.max_line_size, self.max_field_size)
            err_status = err.status
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        response = error_response(err, status=err_status)
        response.headers["X-Request-Id"] = uuid.uuid4().hex
        response.force_close()
        return response

    def _handle_request(
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        if request.method == "CONNECT":
            # aiohttp reads CONNECT's target as an authority, so no route matches and its
            # router would answer a plain-text 404; docs/http-api.md: an unknown method is 403 imsx.
            request_handler = _refuse_connect
        # SECURITY: lines short enough to pass the parser one by one must not add up to a
        # head a district closes on (docs/http-api.md, 431). Only a head that may be that
        # large (see data_received) is measured: nearly every request costs two comparisons.
        self._handled += 1
        if self._handled <= self._measure_upto and head_size(request.raw_headers) > (
            MAX_HEADER_BYTES
        ):
            request_handler = _refuse_head
        # A plain method handing back aiohttp's own coroutine: the common GET, with no body to
        # watch, gets no extra coroutine layer (each one is paid on every resume of the task).
        if not request.body_exists:
            return super()._handle_request(request, start_time, request_handler)
        return self._handle_with_body(request, start_time, request_handler)

    async def _handle_with_body(
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        watch = self._loop.call_later(self.client_timeout, self._watch_body, request)
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            watch.cancel()

    def _watch_body(self, request: BaseRequest) -> None:
        payload = request.content
        if payload.is_eof() or payload.exception() is not None or self.transport is None:
            return
        paused = self._reading_paused or self._buffer_paused
        idle = self._loop.time() - self._last_read
        if paused or idle < self.client_timeout:
            # The proxy is not reading (backpressure: not the vendor's fault), or bytes came
            # recently: look again one full timeout after the last byte.
            delay = self.client_timeout - (0 if paused else idle)
            self._loop.call_later(max(delay, 0.01), self._watch_body, request)
            return
        # SECURITY: a vendor that stops sending its body must not hold a handler, a district
        # slot and an upstream connection open for ever.
        payload.set_exception(RequestTimeout(f"no request body data for {self.client_timeout:g}s"))
        # No lingering for the rest of a body we gave up on: close after the answer.
        self._lingering_time = 0.0
        self.close()


class _GuardedServer(Server):
    client_timeout: float = 60.0

    def __call__(self) -> RequestHandler:
        handler = GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.client_timeout = self.client_timeout
        return handler


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are ``GuardedRequestHandler``s.

    ``client_timeout`` bounds an idle keep-alive connection, the time to send a request head,
    and each pause in a request body."""

    def __init__(self, app: web.Application, *, client_timeout: float, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", client_timeout)
        super().__init__(app, **kwargs)
        self.client_timeout = client_timeout

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # The app builds a plain Server with every handler argument; the subclass adds no state
        # of its own but the timeout, so switching the class keeps all of those arguments.
        server.__class__ = _GuardedServer
        assert isinstance(server, _GuardedServer)
        server.client_timeout = self.client_timeout
        return server


__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_HEADER_COUNT",
    "GuardedAppRunner",
    "GuardedRequestHandler",
    "parser_limits",
    "refusal",
]
