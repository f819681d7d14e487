"""The gateway handler: authenticate -> connection -> scope -> sign -> forward -> rewrite.

SPEC.md "Gateway listener". Each step removes one concern and raises a ``proxy.errors``
exception to refuse; ``proxy.app.Observed`` renders the imsx payload. Nothing here
reaches the district before every check has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import web

from . import forward
from .context import EXCHANGE, Exchange, Services
from .errors import (
    BadRequest,
    BrokenTransfer,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UpstreamConnectError,
    UpstreamError,
    UpstreamResetError,
    UpstreamTimeout,
)
from .hrefs import is_json
from .paths import Target, parse_target
from .rewrite import public_base, request_headers, response_headers
from .scopes import Route, classify

if TYPE_CHECKING:
    from .runtime import Connection, Runtime

FORM = "application/x-www-form-urlencoded"
# Bodies up to this size are read before sending, so that a GET may be retried and an OAuth2
# district's 401 may be answered with a fresh token; larger ones stream and are sent once.
BUFFER_LIMIT = 1024 * 1024
# District answers up to this size (by Content-Length) are read whole and sent in one write.
SMALL_BODY = 64 * 1024


class Gateway:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Labelled metric children per district: .labels() costs a lock and a dict per call.
        self._counters: dict[str, Any] = {}
        self._timers: dict[str, Any] = {}
        self._bases: dict[tuple[str, str, str | None, str | None, bool], str] = {}
        self._routes: dict[tuple[str, str], tuple[Target, Route]] = {}

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        services = self.services
        runtime = services.runtime.current
        config = runtime.config
        ex = request[EXCHANGE]

        try:
            principal = await services.authenticator.authenticate(
                request.headers.get("Authorization"), config.vendors, config.server.jwt_keys
            )
        except Unauthorized as exc:
            _note_refused(ex, exc, runtime, request.raw_path)
            raise
        ex.vendor = principal.vendor
        ex.token_id = principal.token_id
        vendor = config.vendors[principal.vendor]
        if vendor.rate_limit is not None:
            await services.limits.vendor(vendor)

        raw_path, _, query = request.raw_path.partition("?")
        method = request.method
        known = self._routes.get((raw_path, method))
        if known is None:
            target = parse_target(raw_path)
            route = classify(target.rest, method)
            # Pages of one collection share a path (the query differs): a parsed, checked path
            # is kept, so the next page costs a look-up. Both functions are pure.
            if len(raw_path) <= 256:
                if len(self._routes) >= 1024:
                    self._routes.clear()
                self._routes[(raw_path, method)] = (target, route)
        else:
            target, route = known
        ex.app_id = target.app_id
        conn = runtime.connections.get(target.app_id)
        # SECURITY: another vendor's appId gets exactly the unknown-appId answer, so appIds
        # cannot be probed across vendors.
        if conn is None or conn.config.vendor != principal.vendor:
            ex.app_id = "-"
            raise NotFound("unknown application")
        ex.district = conn.district.name
        if not conn.config.enabled:
            raise Forbidden("this district connection is disabled")
        if conn.ends_at is not None and time.time() >= conn.ends_at:
            raise Forbidden("this district connection has expired")

        ex.resource = route.resource
        allowed = route.scopes & conn.config.scopes
        if principal.scopes is not None:
            allowed &= principal.scopes
        if not allowed:
            if not route.scopes:
                raise Forbidden(f"{request.method} /{target.rest} is not a OneRoster operation")
            raise Forbidden(
                f"{request.method} /{target.rest} needs one of the scopes "
                f"{', '.join(sorted(route.scopes))}, which this connection does not share"
            )

        # The rest of the way stays in this coroutine: every await layer is paid again each
        # time the task resumes, and this is the path of every request.
        server = config.server
        if server.public_url is None:
            # A Host that cannot name the rewritten Links is refused (400) here, before the
            # district may act on a write, not after (the answer is remembered: no cost twice).
            self._public_base(request, server.trust_forwarded)
        raw_rest = target.raw_rest
        url = conn.upstream_prefix + raw_rest + (f"?{query}" if query else "")
        body: bytes | AsyncIterator[bytes] | None = None
        content_type: str | None = None
        if request.body_exists:
            body, content_type = await self._body(request, server.max_body)
        if conn.signer is not None:
            _refuse_protocol_params(query, body, content_type)
        base = request_headers(request.headers)
        base.append(("X-Request-Id", ex.request_id))
        if route.gradebook and conn.vendor_header is not None:
            base.append(("x-vendor-authorization", conn.vendor_header))
        out = forward.Outgoing(request.method, url, base, body)

        async with services.limits.district(conn.district):
            upstream = await self._exchange(conn, out, content_type, server.upstream_timeout)
            try:
                return await self._respond(request, runtime, conn, upstream, ex)
            finally:
                upstream.release()

    async def _body(
        self, request: web.Request, max_body: int
    ) -> tuple[bytes | AsyncIterator[bytes] | None, str | None]:
        """The request body to send: bytes when it must be signed (form) or may be re-sent,
        a counted stream otherwise. 413 before reading anything when Content-Length is over."""
        if not request.body_exists:
            return None, None
        length = request.content_length
        if length is not None and length > max_body:
            raise PayloadTooLarge(f"request body of {length} bytes is over the {max_body} limit")
        content_type = request.headers.get("Content-Type")
        mime = (content_type or "").partition(";")[0].strip().lower()
        if mime == FORM or (length is not None and length <= BUFFER_LIMIT):
            return await _read_limited(request.content, max_body), content_type
        return forward.counted_body(request.content, max_body), content_type

    def _sign(
        self, conn: Connection, out: forward.Outgoing, content_type: str | None, token: str | None
    ) -> list[tuple[str, str]]:
        headers = list(out.base_headers)
        if conn.signer is not None:
            body = out.body if isinstance(out.body, bytes) else None
            headers.append(
                (
                    "Authorization",
                    conn.signer.authorization(
                        out.method, out.url, body=body, content_type=content_type
                    ),
                )
            )
        elif token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        return headers

    async def _exchange(
        self, conn: Connection, out: forward.Outgoing, content_type: str | None, timeout: float
    ) -> aiohttp.ClientResponse:
        """Send, retrying GETs on connect failures and short 429/503 pushback, and any
        replayable request once with a fresh token after an OAuth2 district's 401.

        SPEC.md, the paragraph on retries: only GET is ever sent twice (a PUT/POST/DELETE the
        district may have acted on must not be repeated), every attempt and every backoff fits
        inside ``upstream_timeout``, and backoff is exponential with full jitter on top of any
        ``Retry-After``. Each attempt passes ``limits.before_send`` (circuit, district rate)
        and reports to the circuit breaker."""
        services = self.services
        limits = services.limits
        metrics = services.metrics
        district = conn.district.name
        deadline = forward.monotonic() + timeout
        replayable = out.body is None or isinstance(out.body, bytes)
        retry_get = out.method == "GET" and replayable
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = None
            if conn.token_source is not None:
                try:
                    token = await conn.token_source.token()
                except UpstreamError:
                    metrics.upstream_errors.labels(district, "token").inc()
                    raise
            headers = self._sign(conn, out, content_type, token)
            if conn.district.rate_limit is None:
                limits.check_circuit(conn.district, deadline)  # no rate to wait for
            else:
                await limits.before_send(conn.district, deadline)
            remaining = deadline - forward.monotonic()
            if remaining <= 0:
                metrics.upstream_errors.labels(district, "timeout").inc()
                raise UpstreamTimeout("the district did not answer in time")
            started = forward.monotonic()
            # Writes never share a pooled connection the district may have closed meanwhile.
            session = services.session if out.method == "GET" else services.write_session
            try:
                with forward.upstream_errors():
                    response = await forward.start(
                        session, out, headers, remaining, verify=conn.district.tls_verify
                    )
            except (UpstreamConnectError, UpstreamResetError) as exc:
                limits.record_failure(conn.district)
                # A reset before the head may mean the district read the request: only a GET
                # is tried again, and not once the circuit has opened on this district.
                if (
                    retry_get
                    and attempt < forward.MAX_ATTEMPTS
                    and limits.circuit_state(conn.district) == "closed"
                ):
                    delay = forward.retry_delay(attempt, None)
                    if forward.monotonic() + delay < deadline:
                        await asyncio.sleep(delay)
                        continue
                metrics.upstream_errors.labels(district, exc.kind).inc()
                raise
            except UpstreamTimeout:
                limits.record_failure(conn.district)
                metrics.upstream_errors.labels(district, "timeout").inc()
                raise
            except UpstreamError as exc:
                metrics.upstream_errors.labels(district, exc.kind).inc()
                raise
            self._upstream_timer(district).observe(forward.monotonic() - started)
            limits.record_success(conn.district)

            if (
                response.status == 401
                and conn.token_source is not None
                and token is not None
                and replayable
                and not refreshed
            ):
                response.release()
                refreshed = True
                await conn.token_source.invalidate(token)
                continue
            wait = forward.should_retry(out.method, response) if retry_get else None
            if wait is not None and attempt < forward.MAX_ATTEMPTS:
                delay = forward.retry_delay(attempt, wait)
                if forward.monotonic() + delay < deadline:
                    response.release()
                    await asyncio.sleep(delay)
                    continue
            return response

    async def _respond(
        self,
        request: web.Request,
        runtime: Runtime,
        conn: Connection,
        upstream: aiohttp.ClientResponse,
        ex: Exchange,
    ) -> web.StreamResponse:
        server = runtime.config.server
        ex.upstream_status = upstream.status
        if server.public_url is not None:
            base = server.public_url
        else:
            base = self._public_base(request, server.trust_forwarded)
        length = upstream.content_length
        small = length is not None and length <= SMALL_BODY
        prefix = f"{base}/{conn.app_id}/ims/oneroster/"
        hrefs = None
        if conn.hrefs is not None and _rewritable(upstream.headers):
            hrefs = conn.hrefs.stream(prefix)
        headers = response_headers(
            upstream.headers,
            upstream_prefix=conn.link_prefix,
            public_prefix=prefix,
            # web.Response sets it for the body it sends; a rewritten body has another length.
            drop_length=small or hrefs is not None,
        )
        headers.append(("X-Request-Id", ex.request_id))
        district = conn.district.name
        counter = self._bytes_counter(district)
        if small:
            # A small page (the common case) is read whole and sent with its head in one
            # write: one syscall instead of three, and no chunk loop.
            try:
                with forward.upstream_errors():
                    body = await upstream.read()
            except (UpstreamError, UpstreamTimeout) as exc:
                self.services.metrics.upstream_errors.labels(district, exc.kind).inc()
                raise
            if hrefs is not None:
                body = hrefs.feed(body) + hrefs.close()
            response = web.Response(
                status=upstream.status, reason=upstream.reason, body=body, headers=headers
            )
            ex.bytes_out = len(body)
            counter.inc(len(body))
            return response

        downstream = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=headers
        )
        await downstream.prepare(request)

        def on_bytes(n: int) -> None:
            ex.bytes_out += n
            counter.inc(n)

        try:
            await forward.stream_back(upstream, downstream, request, on_bytes, hrefs)
        except (UpstreamError, UpstreamTimeout) as exc:  # an idle read past upstream_timeout
            # SECURITY: the head is already sent; a vendor must see a broken transfer, never a
            # complete-looking 200 with half of the district's body.
            self.services.metrics.upstream_errors.labels(district, exc.kind).inc()
            ex.error = exc.description
            if request.transport is not None:
                request.transport.abort()
            raise BrokenTransfer(exc.description) from exc
        except (ConnectionResetError, asyncio.CancelledError):
            ex.error = "vendor disconnected"
            raise
        return downstream

    def _public_base(self, request: web.Request, trusted: bool) -> str:
        """``public_base`` for this request, remembered per input: the same few Hosts arrive
        on every request, and checking one costs a regular expression and a format."""
        headers_in = request.headers
        key = (
            request.scheme,
            request.host,
            headers_in.get("X-Forwarded-Proto") if trusted else None,
            headers_in.get("X-Forwarded-Host") if trusted else None,
            trusted,
        )
        base = self._bases.get(key)
        if base is None:
            base = public_base(*key[:4], trust_forwarded=trusted, public_url=None)
            # The Host is the client's to choose: bound what a stream of new ones can hold.
            if len(self._bases) >= 256:
                self._bases.clear()
            self._bases[key] = base
        return base

    def _upstream_timer(self, district: str) -> Any:
        timer = self._timers.get(district)
        if timer is None:
            timer = self._timers[district] = self.services.metrics.upstream_duration.labels(
                district
            )
        return timer

    def _bytes_counter(self, district: str) -> Any:
        counter = self._counters.get(district)
        if counter is None:
            counter = self._counters[district] = self.services.metrics.response_bytes.labels(
                district
            )
        return counter


def _note_refused(ex: Exchange, exc: Unauthorized, runtime: Runtime, raw_path: str) -> None:
    """Whose refused token it was, for the access line: an operator looks for who keeps
    using a revoked token. The app and district only when the app is that vendor's."""
    ex.token_id = exc.token_id
    if exc.vendor is None:
        return
    ex.vendor = exc.vendor
    app_id = raw_path.lstrip("/").partition("/")[0]
    conn = runtime.connections.get(app_id)
    if conn is not None and conn.config.vendor == exc.vendor:
        ex.app_id = app_id
        ex.district = conn.district.name


def _refuse_protocol_params(
    query: str, body: bytes | AsyncIterator[bytes] | None, content_type: str | None
) -> None:
    """RFC 5849 §3.4.1.3.1 signs ``oauth_*`` parameters of the query and a form body along
    with the protocol's own; a vendor's would be signed as if the proxy had chosen them."""
    # SECURITY: a vendor must not inject oauth_consumer_key, oauth_token and the like into the
    # district's signature (and an oauthlib-based district refuses such requests anyway).
    if "oauth" in query.lower() and _names_oauth(query):
        raise BadRequest("oauth_* query parameters are the proxy's to set")
    if isinstance(body, bytes) and b"oauth" in body.lower():
        mime = (content_type or "").partition(";")[0].strip().lower()
        if mime == FORM and _names_oauth(body.decode("latin-1")):
            raise BadRequest("oauth_* form parameters are the proxy's to set")


def _names_oauth(form: str) -> bool:
    for part in form.split("&"):
        name = unquote_plus(part.partition("=")[0])
        if name.lower().startswith("oauth_"):
            return True
    return False


def _rewritable(headers: Any) -> bool:
    """A JSON body sent as is: ``rewrite_hrefs`` leaves compressed bodies alone (the proxy
    forwards them still encoded and does not decompress to rewrite)."""
    encoding = headers.get("Content-Encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        return False
    return is_json(headers.get("Content-Type"))


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    seen = 0
    async for chunk in stream.iter_chunked(forward.CHUNK):
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["Gateway"]
