"""The gateway application, built by ``create_app`` (docs/http-api.md).

Everything a request needs hangs off ``Services`` (``proxy.gateway.context``) under one
``web.AppKey``: the current ``Runtime`` (swapped atomically on reload), the authenticator with its
token cache,
the store, metrics, limits, circuit breakers and the upstream client sessions (pooled for
reads, fresh connections for writes), opened and closed in ``cleanup_ctx``. No module-level
state, so tests build as many apps side by side as they like.

``Observed`` wraps every handler of the listener: the request id, the in-flight gauge,
metrics, the access log line, and the one place where a ``ProxyError`` (or one of aiohttp's
own refusals) becomes the imsx JSON payload. Three routes: ``GET /applications``,
``POST /oauth/token``, and a catch-all for the gateway that matches any path at all,
including ones holding ``%0a`` that a ``.*`` pattern would miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy.check.background import background_checks
from proxy.config import Config
from proxy.connections import managed
from proxy.console.intake import add_intake
from proxy.errors import ORIGIN, BrokenTransfer, ProxyError, error_response, refusal_response
from proxy.gateway import forward, vendor_api
from proxy.gateway.circuit import Circuits
from proxy.gateway.context import EXCHANGE, SERVICES, Exchange, RuntimeHolder, Services
from proxy.gateway.handler import Gateway
from proxy.gateway.inbound import Authenticator
from proxy.gateway.inbound_limits import parser_limits
from proxy.gateway.limits import Limits
from proxy.gateway.resolve import StoreConnections
from proxy.gateway.runtime import build_runtime
from proxy.logs import log_action, log_exchange
from proxy.metrics import Metrics
from proxy.store.base import Store

log = logging.getLogger("oneroster_proxy")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestIds:
    """Ids for requests that arrive without a usable ``X-Request-Id``: a random per-process
    prefix and a counter, unique across workers and replicas and far cheaper than uuid4."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def __call__(self, inbound: str | None) -> str:
        # SECURITY: only a well-formed inbound id is echoed (it goes into headers and logs).
        if inbound is not None and _REQUEST_ID_RE.match(inbound):
            return inbound
        return f"{self._prefix}{next(self._counter):010x}"


class Observed:
    """Wraps every handler of the gateway listener: the request id, the in-flight gauge,
    metrics and the access log line around it, and the one place where a ``ProxyError`` (or
    one of aiohttp's own refusals) becomes the imsx payload. A plain wrapper rather than
    middlewares: aiohttp rebuilds a middleware chain per request, which this hot path cannot
    afford."""

    __slots__ = ("_children", "_counted", "_handler", "_ids", "_metrics", "_own")

    def __init__(self, handler: Handler, metrics: Metrics, ids: RequestIds, *, counted: bool):
        self._handler = handler
        self._metrics = metrics
        self._ids = ids
        self._counted = counted
        # docs/http-api.md "Who made an answer": the gateway's returned answers are the
        # district's (marked where they are built); /applications and /oauth/token answer
        # themselves. Refusals are marked by ``error_response`` whichever handler raised them.
        self._own = not counted
        # (vendor, district, resource, method, code) -> (requests child, duration child)
        self._children: dict[tuple[str, str, str, str, str], tuple[Any, Any]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ex = Exchange(
            request_id=self._ids(request.headers.get("X-Request-Id")),
            started=time.monotonic(),
            method=request.method,
        )
        request[EXCHANGE] = ex
        metrics = self._metrics
        metrics.inflight.inc()
        try:
            try:
                response = await self._handler(request)
            except ProxyError as err:
                ex.error = err.description
                response = error_response(err)
            except web.HTTPException as exc:
                if exc.status < 400:
                    exc.headers[ORIGIN] = "proxy"
                    raise
                ex.error = exc.reason
                response = refusal_response(exc)
            if not response.prepared:
                response.headers["X-Request-Id"] = ex.request_id
                if self._own:
                    response.headers[ORIGIN] = "proxy"
            ex.status = response.status
            return response
        except BrokenTransfer:
            ex.status = ex.upstream_status or 502
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            ex.status = 499
            raise
        finally:
            elapsed = time.monotonic() - ex.started
            # Counted and logged once the loop is free again: for the common small answer
            # aiohttp writes it right after this returns, so the vendor does not wait for the
            # metrics and the access line (nothing in them depends on the write).
            asyncio.get_running_loop().call_soon(self._account, request, ex, elapsed)

    def _account(self, request: web.Request, ex: Exchange, elapsed: float) -> None:
        metrics = self._metrics
        metrics.inflight.dec()
        if self._counted:
            key = (ex.vendor, ex.district, ex.resource, ex.method, str(ex.status))
            children = self._children.get(key)
            if children is None:
                children = (
                    metrics.requests.labels(*key),
                    metrics.request_duration.labels(*key[:3]),
                )
                if len(self._children) < 10_000:
                    self._children[key] = children
            tally = metrics.tally
            tally.count(children[0])
            tally.observe(children[1], elapsed)
            metrics.activity.record(ex.app_id, ex.status, ex.upstream_status)
        log_exchange(request, ex, elapsed)


def create_app(
    config: Config,
    store: Store,
    *,
    metrics: Metrics | None = None,
    limits: Limits | None = None,
) -> web.Application:
    """The gateway application for ``config``; ``store`` is opened and closed with it."""
    metrics = metrics or Metrics()
    limits = limits or Limits(store)
    if limits.wait_seconds is None:
        limits.wait_seconds = metrics.district_wait
    services = Services(
        store=store,
        authenticator=Authenticator(store, config.store.cache_ttl),
        metrics=metrics,
        limits=limits,
        circuits=Circuits(metrics),
    )
    services.runtime = RuntimeHolder(build_runtime(config, services.token_source))
    services.store_connections = StoreConnections(
        store, config.store.cache_ttl, services.token_source, secret_box=services.secret_box
    )

    app = web.Application(
        client_max_size=config.server.max_body,
        handler_args=parser_limits(config.server.max_line, config.server.max_headers),
    )
    app[SERVICES] = services
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(background_checks)

    ids = RequestIds()
    app.router.add_get(
        "/applications", Observed(vendor_api.applications, metrics, ids, counted=False).handle
    )
    app.router.add_post(
        "/oauth/token", Observed(vendor_api.token, metrics, ids, counted=False).handle
    )
    # docs/http-api.md "District intake": the one-time form district IT reaches on this listener.
    add_intake(app)
    # Everything else is the gateway's, whatever the path: ``[\s\S]`` rather than ``.``, since
    # the router matches the decoded path and a ``%0a`` in it must reach the gateway's own
    # refusal (an imsx 400), not aiohttp's plain-text 404.
    app.router.add_route(
        "*", r"/{tail:[\s\S]*}", Observed(Gateway(services), metrics, ids, counted=True).handle
    )
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    services.session = forward.new_session()
    services.write_session = forward.new_session(fresh_connections=True)
    services.pool = forward.new_pool()
    await services.store.open()
    await services.sync_client_secrets()
    await _reseal_legacy(services)
    flusher = asyncio.get_running_loop().create_task(_flush_last_used(services))
    try:
        yield
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        with contextlib.suppress(ProxyError):
            await services.authenticator.flush_last_used()
        with contextlib.suppress(ProxyError):
            await _flush_ledger(services)
        for source in services.runtime.current.token_sources.values():
            await source.close()
        await services.store_connections.close()
        await services.limits.close()
        await services.pool.close()
        await services.session.close()
        await services.write_session.close()
        await services.store.close()


async def _reseal_legacy(services: Services) -> None:
    """Secrets an earlier version sealed (bound to the appId only) sealed again for where
    they are sent, so a store written by an earlier version keeps working (docs/commands.md,
    ``store rekey``). Every worker and replica may do it at once: each swap names the version
    it read, so the second finds nothing left to do."""
    config = services.runtime.current.config
    box = services.secret_box()
    if not box.can_seal:
        return
    try:
        done, _, problems = await managed.reseal(
            services.store, box, config.districts, legacy_only=True
        )
    except ProxyError as exc:
        log.warning("could not re-seal the store's older secrets: %s", exc.description)
        return
    if done:
        log_action(f"re-sealed {done} store secret(s) for their districts", event="store.reseal")
    for problem in problems:
        log.error("%s", problem, extra={"fields": {"event": "store.secret"}})


async def _flush_last_used(services: Services, every: float = 5.0) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await services.authenticator.flush_last_used()
        except ProxyError as exc:
            log.warning("could not record token use: %s", exc.description)
        if services.secrets.pending:
            await services.sync_client_secrets()
        try:
            await _flush_ledger(services)
        except ProxyError as exc:
            log.warning("could not write the access ledger: %s", exc.description)


async def _flush_ledger(services: Services) -> None:
    """The access ledger's counts into the store, off the request path."""
    keep = services.runtime.current.config.store.ledger_days
    await services.ledger.flush(services.store, keep)


__all__ = ["create_app"]
