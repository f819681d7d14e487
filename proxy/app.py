"""The gateway application, built by ``create_app`` (SPEC.md "Gateway listener").

Everything a request needs hangs off ``Services`` under one ``web.AppKey``: the current
``Runtime`` (swapped atomically on reload), the authenticator with its token cache, the store,
metrics, limits and the one upstream client session, opened and closed in ``cleanup_ctx``.
No module-level state, so tests build as many apps side by side as they like.

Two middlewares wrap every request, outermost first: ``observe`` (request id, in-flight gauge,
metrics, the access log line) and ``render_errors`` (any ``ProxyError``, and aiohttp's own
404/405 from the router, become the imsx JSON payload). Paths no route matches, which includes
paths aiohttp's router cannot match at all (one holding ``%0a``), go to the gateway handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from . import forward
from .config import Config, ConnectionConfig, DistrictConfig
from .errors import NotFound, ProxyError, imsx_body
from .handler import EXCHANGE, BrokenTransfer, Exchange, Gateway
from .inbound import Authenticator
from .limits import Limits
from .logs import log_exchange
from .metrics import Metrics
from .runtime import Runtime, build_runtime
from .signing.oauth2 import OAuth2TokenSource
from .store.base import Store

log = logging.getLogger("oneroster_proxy")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RuntimeHolder:
    """The current runtime; replaced whole, never mutated, so readers need no lock."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime


@dataclass
class Services:
    runtime: RuntimeHolder
    store: Store
    authenticator: Authenticator
    metrics: Metrics
    limits: Limits
    session: aiohttp.ClientSession = field(init=False)
    write_session: aiohttp.ClientSession = field(init=False)
    reload: Callable[[Config], Awaitable[None]] | None = None

    def token_source(
        self, district: DistrictConfig, conn: ConnectionConfig, scopes: list[str], timeout: float
    ) -> OAuth2TokenSource:
        counter = self.metrics.token_fetches.labels(district.name)
        return OAuth2TokenSource(
            district.token_url or "",
            conn.key,
            conn.secret,
            scopes,
            session_factory=lambda: self.session,
            timeout=timeout,
            on_fetch=counter.inc,
        )


SERVICES = web.AppKey("services", Services)


def request_id(request: web.Request) -> str:
    inbound = request.headers.get("X-Request-Id")
    # SECURITY: only a well-formed inbound id is echoed (it goes into headers and logs).
    if inbound is not None and _REQUEST_ID_RE.match(inbound):
        return inbound
    return uuid.uuid4().hex


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    services = request.app[SERVICES]
    ex = Exchange(request_id=request_id(request), started=time.monotonic(), method=request.method)
    request[EXCHANGE] = ex
    metrics = services.metrics
    metrics.inflight.inc()
    try:
        response = await handler(request)
        ex.status = response.status
        return response
    except BrokenTransfer:
        ex.status = ex.upstream_status or 502
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        ex.status = 499
        raise
    finally:
        metrics.inflight.dec()
        elapsed = time.monotonic() - ex.started
        if request.path not in ("/applications", "/oauth/token"):
            metrics.requests.labels(
                ex.vendor, ex.district, ex.resource, ex.method, str(ex.status)
            ).inc()
            metrics.request_duration.labels(ex.vendor, ex.district, ex.resource).observe(elapsed)
        log_exchange(request, ex, elapsed)


def error_response(err: ProxyError) -> web.Response:
    response = web.Response(status=err.status, body=err.body(), content_type="application/json")
    for name, value in err.headers().items():
        response.headers[name] = value
    return response


@web.middleware
async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    ex = request[EXCHANGE]
    try:
        return await handler(request)
    except ProxyError as err:
        ex.error = err.description
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (router 404/405, 413 from request.read) keep their status but
        # get the imsx payload instead of aiohttp's plain text.
        ex.error = exc.reason
        response = web.Response(
            status=exc.status,
            body=imsx_body(exc.reason, "invaliddata" if exc.status < 500 else "server_busy"),
            content_type="application/json",
        )
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    ex = request.get(EXCHANGE)
    if ex is not None:
        response.headers["X-Request-Id"] = ex.request_id


def create_app(
    config: Config,
    store: Store,
    *,
    metrics: Metrics | None = None,
    limits: Limits | None = None,
) -> web.Application:
    """The gateway application for ``config``; ``store`` is opened and closed with it."""
    metrics = metrics or Metrics()
    services = Services(
        runtime=None,  # type: ignore[arg-type]  # set just below, once token sources can be made
        store=store,
        authenticator=Authenticator(store, config.store.cache_ttl),
        metrics=metrics,
        limits=limits or Limits(metrics, store),
    )
    services.runtime = RuntimeHolder(build_runtime(config, services.token_source))

    app = web.Application(
        middlewares=[observe, render_errors],
        client_max_size=config.server.max_body,
        handler_args={
            "max_line_size": config.server.max_line,
            "max_field_size": config.server.max_headers,
        },
    )
    app[SERVICES] = services
    app.on_response_prepare.append(_on_prepare)
    app.cleanup_ctx.append(_resources)

    gateway = Gateway(services)
    from .vendor_api import add_vendor_routes

    add_vendor_routes(app)
    app.middlewares.append(_fallback(gateway))
    return app


def _fallback(gateway: Gateway) -> Callable[..., Any]:
    """Every path no route matches goes to the gateway. Not a catch-all route: aiohttp's
    router cannot match some paths at all (one holding ``%0a``) and would answer those with
    its own plain-text 404; this way the gateway refuses them with an imsx payload."""

    @web.middleware
    async def fallback(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        if match_info.http_exception is not None and match_info.http_exception.status == 404:
            return await gateway(request)
        return await handler(request)

    return fallback


async def _resources(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    services.session = forward.new_session()
    services.write_session = forward.new_session(fresh_connections=True)
    await services.store.open()
    flusher = asyncio.get_running_loop().create_task(_flush_last_used(services))
    try:
        yield
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        with contextlib.suppress(ProxyError):
            await services.authenticator.flush_last_used()
        for source in services.runtime.current.token_sources.values():
            await source.close()
        await services.session.close()
        await services.write_session.close()
        await services.store.close()


async def _flush_last_used(services: Services, every: float = 5.0) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await services.authenticator.flush_last_used()
        except ProxyError as exc:
            log.warning("could not record token use: %s", exc.description)


def swap_runtime(app: web.Application, config: Config) -> Runtime:
    """Install a validated config; requests in flight keep the runtime they started with."""
    services = app[SERVICES]
    old = services.runtime.current
    new = build_runtime(config, services.token_source, previous=old)
    services.runtime.current = new
    services.authenticator.set_ttl(config.store.cache_ttl)
    return new


__all__ = ["SERVICES", "NotFound", "Services", "create_app", "swap_runtime"]
