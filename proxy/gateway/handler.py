"""The gateway handler: authenticate -> connection -> scope -> sign -> forward -> rewrite.

docs/http-api.md. ``Gateway.__call__`` is that sentence, one line per step; each step
removes one concern and raises a ``proxy.errors`` exception to refuse (``proxy.app.Observed``
renders the imsx payload). Nothing reaches the district before every check has passed. Signing
and forwarding happen together, once per attempt, under the upstream policy of
``proxy.gateway.upstream`` (retries, backoff, circuit, the OAuth2 401).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from proxy.errors import (
    FROM_DISTRICT,
    BadRequest,
    BrokenTransfer,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.forms import is_form, reserved_name
from proxy.gateway import forward
from proxy.gateway.context import EXCHANGE, Exchange, Services
from proxy.gateway.hrefs import is_json
from proxy.gateway.paths import Target, parse_target
from proxy.gateway.rewrite import public_base, request_headers, response_headers
from proxy.gateway.upstream import BUFFER_LIMIT, Upstream
from proxy.metrics import Children
from proxy.scopes import Route, classify
from proxy.sharing.policy import FieldStream, ledger_collection

if TYPE_CHECKING:
    from proxy.gateway.inbound import Principal
    from proxy.gateway.runtime import Connection, Runtime

# District answers up to this size (by Content-Length) are read whole and sent in one write.
SMALL_BODY = 64 * 1024


class Gateway:
    """The catch-all handler of the gateway listener; one per app, its caches with it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.upstream = Upstream(services)
        self._bytes = Children(services.metrics.response_bytes)
        self._bases: dict[tuple[str, str, str | None, str | None, bool], str] = {}
        self._routes: dict[tuple[str, str], tuple[Target, Route]] = {}

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        # The steps stay in this coroutine where they may wait (every await layer is paid
        # again each time the task resumes, on the path of every request); the checks between
        # them are plain calls.
        runtime = self.services.runtime.current
        ex = request[EXCHANGE]
        principal = await self._authenticate(request, runtime, ex)
        target, route = self._target(request, ex)
        found = runtime.connections.get(target.app_id) or await self._managed(runtime, target)
        conn = self._connection(found, principal, ex)
        if conn.district.pauses:
            # docs/configuration.md "SIS courtesy": a paused district gets nothing.
            self.services.limits.not_paused(conn.district)
        self._scope(request.method, target, route, conn, principal)
        out, content_type = await self._outgoing(request, runtime, conn, target, route, ex)
        async with self.services.limits.district(conn.district, principal.vendor, conn.app_id):
            upstream = await self.upstream.send(
                conn, out, content_type, runtime.config.server.upstream_timeout
            )
            try:
                return await self._rewrite(request, runtime, conn, upstream, ex)
            finally:
                upstream.release()

    async def _authenticate(
        self, request: web.Request, runtime: Runtime, ex: Exchange
    ) -> Principal:
        """The vendor behind the bearer token (401 if none), within its rate limit (429)."""
        config = runtime.config
        services = self.services
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
        return principal

    def _target(self, request: web.Request, ex: Exchange) -> tuple[Target, Route]:
        """The checked path (400 for traversal in any encoding) and its OneRoster route."""
        raw_path = request.raw_path.partition("?")[0]
        method = request.method
        known = self._routes.get((raw_path, method))
        if known is None:
            target = parse_target(raw_path)
            known = (target, classify(target.rest, method))
            # Pages of one collection share a path (the query differs): a parsed, checked path
            # is kept, so the next page costs a look-up. Both functions are pure.
            if len(raw_path) <= 256:
                if len(self._routes) >= 1024:
                    self._routes.clear()
                self._routes[(raw_path, method)] = known
        ex.app_id = known[0].app_id
        ex.resource = known[1].resource
        return known

    async def _managed(self, runtime: Runtime, target: Target) -> Connection | None:
        """An appId the TOML file does not define: a store connection (cached for
        ``cache_ttl``), or None."""
        return await self.services.store_connections.get(target.app_id, runtime)

    @staticmethod
    def _connection(conn: Connection | None, principal: Principal, ex: Exchange) -> Connection:
        """The vendor's connection named by the appId: 404 if it is not theirs, 403 while it is
        disabled or expired."""
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
        return conn

    @staticmethod
    def _scope(
        method: str, target: Target, route: Route, conn: Connection, principal: Principal
    ) -> None:
        """404 for a OneRoster version the district does not serve; 403 unless the route's
        scopes meet the connection's (and a narrowed JWT's)."""
        if route.version and route.version not in conn.district.versions:
            raise NotFound(unserved_version(route.version, conn.district.versions))
        shared = route.scopes & conn.config.scopes
        allowed = shared if principal.scopes is None else shared & principal.scopes
        if not allowed:
            if not route.scopes:
                raise Forbidden(f"{method} /{target.rest} is not a OneRoster operation")
            # Name what is missing: the connection's share, or (it shares one) the JWT's scope.
            if shared:
                lacking = "and this token's scope (narrowed at /oauth/token) lacks"
            else:
                lacking = "and this connection does not share"
            raise Forbidden(
                f"{method} /{target.rest} needs one of the scopes "
                f"{', '.join(sorted(route.scopes))}, {lacking} any of them"
            )

    async def _outgoing(
        self,
        request: web.Request,
        runtime: Runtime,
        conn: Connection,
        target: Target,
        route: Route,
        ex: Exchange,
    ) -> tuple[forward.Outgoing, str | None]:
        """The request for the district, unsigned: its URL, headers and body (with the body's
        Content-Type, which OAuth1 signs for a form)."""
        server = runtime.config.server
        if server.public_url is None:
            # A Host that cannot name the rewritten Links is refused (400) here, before the
            # district may act on a write, not after (the answer is remembered: no cost twice).
            self._public_base(request, server.trust_forwarded)
        query = request.raw_path.partition("?")[2]
        url = conn.upstream_prefix + target.raw_rest + (f"?{query}" if query else "")
        body: bytes | AsyncIterator[bytes] | None = None
        content_type: str | None = None
        if request.body_exists:
            body, content_type = await _body(request, server.max_body)
        _refuse_reserved(query, body, content_type)
        headers = request_headers(request.headers)
        if conn.policy.changes(route.resource):
            # SECURITY: a compressed answer would pass the sharing policy unread.
            headers = [h for h in headers if h[0].lower() != "accept-encoding"]
            headers.append(("Accept-Encoding", "identity"))
        headers.append(("X-Request-Id", ex.request_id))
        if route.gradebook and conn.vendor_header is not None:
            headers.append(("x-vendor-authorization", conn.vendor_header))
        return forward.Outgoing(request.method, url, headers, body), content_type

    async def _rewrite(
        self,
        request: web.Request,
        runtime: Runtime,
        conn: Connection,
        upstream: forward.Response,
        ex: Exchange,
    ) -> web.StreamResponse:
        """The district's answer, of any status, to the vendor: headers filtered and ``Link``
        (and with ``rewrite_hrefs`` JSON ``href`` values) pointed at the proxy."""
        server = runtime.config.server
        ex.upstream_status = upstream.status
        if server.public_url is not None:
            base = server.public_url
        else:
            base = self._public_base(request, server.trust_forwarded)
        length = upstream.content_length
        head = request.method == "HEAD"
        small = length is not None and length <= SMALL_BODY and not head
        prefix = f"{base}/{conn.app_id}/ims/oneroster/"
        matcher = conn.hrefs if conn.hrefs is not None and _rewritable(upstream.headers) else None
        body_filter: FieldStream | None = None
        changes = matcher is not None
        if _rewritable(upstream.headers):
            changes = changes or conn.policy.changes(ex.resource)
            body_filter = conn.policy.stream(ex.resource, cut=changes)
        headers = response_headers(
            upstream.headers,
            upstream_prefix=conn.link_prefix,
            public_prefix=prefix,
            # web.Response sets it for the body it sends; a filtered body may have another length.
            drop_length=small or changes,
        )
        headers.append(("X-Request-Id", ex.request_id))
        headers.append(FROM_DISTRICT)
        if head:
            # RFC 9110 §9.3.2: the district's head as it came (its Content-Length is what a GET
            # would carry), no body.
            answer = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=headers
            )
            await answer.prepare(request)
            await answer.write_eof()
            self._delivered(conn, ex, upstream.status, None)
            return answer
        district = conn.district.name
        counter = self._bytes[district]
        tally = self.services.metrics.tally
        if small:
            # A small page (the common case) is read whole and sent with its head in one
            # write: one syscall instead of three, and no chunk loop.
            try:
                with forward.UPSTREAM_ERRORS:
                    body = await upstream.read()
            except (UpstreamError, UpstreamTimeout) as exc:
                self.services.metrics.upstream_errors.labels(district, exc.kind).inc()
                raise
            if body_filter is not None:
                body = body_filter.whole(body)
            if matcher is not None:
                body = matcher.rewrite(body, prefix)
            response = web.Response(
                status=upstream.status, reason=upstream.reason, body=body, headers=headers
            )
            ex.bytes_out = len(body)
            tally.count(counter, len(body))
            self._delivered(conn, ex, upstream.status, body_filter)
            return response

        downstream = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=headers
        )
        await downstream.prepare(request)

        def on_bytes(n: int) -> None:
            ex.bytes_out += n
            tally.count(counter, n)

        hrefs = matcher.stream(prefix) if matcher is not None else None
        if body_filter is not None:
            body_filter.then = hrefs  # one pass: the sharing policy, then the href rewriter
        try:
            await forward.stream_back(upstream, downstream, request, on_bytes, body_filter or hrefs)
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
        finally:
            self._delivered(conn, ex, upstream.status, body_filter)
        return downstream

    def _delivered(
        self, conn: Connection, ex: Exchange, status: int, body_filter: FieldStream | None
    ) -> None:
        """Into the access ledger: what this answer gave the vendor (counts and names)."""
        records, fields = (0, ()) if body_filter is None else body_filter.delivered()
        self.services.ledger.count(
            conn.app_id,
            conn.config.vendor,
            conn.district.name,
            ledger_collection(ex.resource),
            status,
            ex.bytes_out,
            records,
            fields,
        )

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


_VERSION_PATHS = {
    "v1p1": ("1.1", "/ims/oneroster/v1p1/..."),
    "v1p2": ("1.2", "/ims/oneroster/{rostering,gradebook,resources}/v1p2/..."),
}


def unserved_version(version: str, served: tuple[str, ...]) -> str:
    """docs/http-api.md: a district declared without a OneRoster version answers that
    version's paths with 404 (never forwarded), naming the versions it does serve."""
    asked = _VERSION_PATHS[version][0]
    serves = " and ".join(f"{_VERSION_PATHS[v][0]} ({_VERSION_PATHS[v][1]})" for v in served)
    return f"this district does not serve OneRoster {asked}; it serves OneRoster {serves}"


async def _body(
    request: web.Request, max_body: int
) -> tuple[bytes | AsyncIterator[bytes] | None, str | None]:
    """The request body to send: bytes when it must be signed (form) or may be re-sent
    (``proxy.gateway.upstream.BUFFER_LIMIT``), a counted stream otherwise. 413 before reading
    anything when Content-Length is over."""
    length = request.content_length
    if length is not None and length > max_body:
        raise PayloadTooLarge(f"request body of {length} bytes is over the {max_body} limit")
    # One Content-Type at most: aiohttp's parser refuses a second one (400), so the proxy and
    # the district cannot each read another (a form to the district, not to the checks here).
    content_type = request.headers.get("Content-Type")
    if is_form(content_type) or (length is not None and length <= BUFFER_LIMIT):
        return await _read_limited(request.content, max_body), content_type
    return forward.counted_body(request.content, max_body), content_type


def _refuse_reserved(
    query: str, body: bytes | AsyncIterator[bytes] | None, content_type: str | None
) -> None:
    """400 for a query parameter or form field that is the district's to read, whatever its
    encoding (``proxy.forms.reserved_name``): RFC 5849 §3.4.1.3.1 signs ``oauth_*`` fields
    along with the protocol's own, and a ``_method`` field turns a POST into another method
    past the scope check (docs/http-api.md, refused parameters)."""
    # SECURITY: a vendor must not inject oauth_consumer_key, oauth_token and the like into the
    # district's signature, nor a DELETE into a POST its connection may make.
    if query:
        name = reserved_name(query)
        if name is not None:
            raise BadRequest(f"the query parameter {_shown(name)} is not the vendor's to set")
    if isinstance(body, bytes) and body and is_form(content_type):
        name = reserved_name(body.decode("latin-1"))
        if name is not None:
            raise BadRequest(f"the form field {_shown(name)} is not the vendor's to set")


def _shown(name: str) -> str:
    """A refused name in the answer: the rule it broke, not the vendor's bytes."""
    return "_method" if name == "_method" else "oauth_*"


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
