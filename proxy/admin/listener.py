"""The admin listener: ``/metrics``, ``/healthz``, ``/readyz`` and the ``/admin/*`` JSON API.

docs/http-api.md. Everything except the three public probes needs
``Authorization: Bearer <[admin] token>``, compared in constant time; with no admin token
configured the API is closed (401). No key, secret or token hash is ever returned; a newly
issued token is shown once. ``/readyz`` answers 503 while the store is unreachable and from the
moment a SIGTERM drain begins, so a load balancer stops sending new requests. Each ``/admin/*``
request is logged (method, path, status; never the Authorization header).

The token routes are ``proxy.admin.tokens``'s, the managed districts and connections
``proxy.admin.connections``'s.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.admin import connections as admin_connections
from proxy.admin import ledger as admin_ledger
from proxy.admin import tokens as admin_tokens
from proxy.admin.body import json_object, only_fields
from proxy.check.background import refresh_check_gauges
from proxy.check.catalog import find_connection, run_and_keep_check
from proxy.config import ConfigError
from proxy.connections import invites
from proxy.console import CONSOLE, add_console, is_console_route
from proxy.console.core import no_favicon
from proxy.errors import (
    FROM_PROXY,
    BadRequest,
    NotFound,
    ProxyError,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
    error_response,
    imsx_body,
    imsx_response,
    refusal_response,
)
from proxy.gateway.context import SERVICES, Services
from proxy.gateway.reload import reload_config
from proxy.gateway.runtime import Connection
from proxy.scopes import SCOPES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("oneroster_proxy.admin")
PUBLIC_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/favicon.ico"})


@dataclass
class AdminState:
    """What the admin listener knows beyond the gateway's services: whether a drain began."""

    draining: bool = False


GATEWAY = web.AppKey("gateway", web.Application)
METRICS_TEXT: web.AppKey[Callable[[], bytes]] = web.AppKey("metrics_text")
STATE = web.AppKey("admin_state", AdminState)


def create_admin_app(
    gateway: web.Application, *, metrics_text: Callable[[], bytes] | None = None
) -> web.Application:
    """The admin app, reading the gateway's services (same process, same runtime)."""
    app = web.Application(middlewares=[_admin_log, _admin_errors])
    app[GATEWAY] = gateway
    app[STATE] = AdminState()
    services = gateway[SERVICES]
    app[SERVICES] = services  # what every admin route reads, whichever module it is in
    app[METRICS_TEXT] = metrics_text or (lambda: generate_latest(services.metrics.registry))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/favicon.ico", no_favicon)  # the console's browser asks for it
    app.router.add_get("/admin/connections", connections)
    app.router.add_get("/admin/connections/{app_id}", connection)
    app.router.add_post("/admin/connections/{app_id}/check", post_check)
    admin_tokens.add_routes(app)
    app.router.add_post("/admin/reload", reload)
    app.router.add_post("/admin/connections/{app_id}/invite", invite_connection)
    app.router.add_delete("/admin/connections/{app_id}/invite", revoke_invite)
    app.router.add_get("/admin/invites", list_invites)
    admin_connections.add_routes(app)
    app.router.add_get("/admin/activity", activity)
    admin_ledger.add_routes(app)
    add_console(app, gateway)
    return app


@web.middleware
async def _admin_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)  # probes and scrapes every few seconds: not logged
    started = time.monotonic()
    status = 0
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        log.info(
            "admin request",
            extra={
                "fields": {
                    "event": "admin.request",
                    "method": request.method,
                    "path": request.path[:256],
                    "status": status or 499,
                    "duration_ms": round((time.monotonic() - started) * 1000, 2),
                }
            },
        )


@web.middleware
async def _admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        # SECURITY: everything but the public probes needs the admin token, whatever path
        # spelling reached the router (a prefix check on "/admin/" would let "//admin/..."
        # variants be judged by routing alone).
        if request.path not in PUBLIC_PATHS and not is_console_route(request):
            _authorize(request)
        response = await handler(request)
        if not response.prepared:
            response.headers.add(*FROM_PROXY)  # docs/http-api.md "Who made an answer"
        return response
    except StoreUnavailable as err:
        if request.path in PUBLIC_PATHS or is_console_route(request):
            return error_response(err)
        # An operator who passed the admin token is told what the store said (e.g. that no
        # Redis replica confirmed a new token); the description names the store without its
        # password. Vendors and unauthenticated probes only ever get the generic text.
        body = imsx_body(err.description, err.code_minor)
        return imsx_response(err.status, body, err.headers())
    except ProxyError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers.add(*FROM_PROXY)  # a console redirect
            raise
        return refusal_response(exc)


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def _authorize(request: web.Request) -> None:
    expected = _services(request).runtime.current.config.admin.token
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    guard = request.app[CONSOLE].guard
    address = request.remote or "-"
    # SECURITY: an address that sent more than 10 wrong admin tokens this minute is refused
    # until the minute ends, whatever it sends now (THREAT_MODEL.md "Admin API and console").
    wait = guard.retry_after(address)
    if wait:
        log.warning(
            "admin token refused",
            extra={"fields": {"event": "admin.auth", "client": address, "result": "throttled"}},
        )
        raise TooManyRequests(
            "too many wrong admin tokens from this address; try again later", retry_after=wait
        )
    # SECURITY: constant-time comparison; no (or an empty) admin token configured means no
    # admin API, never one that "Bearer " with nothing after it opens.
    if (
        not expected
        or scheme.lower() != "bearer"
        # surrogateescape: a header value that is not UTF-8 is refused, not a 500
        or not hmac.compare_digest(
            value.strip().encode("utf-8", "surrogateescape"), expected.encode()
        )
    ):
        if header:
            guard.wrong(address)
            # The refusal is logged; the token sent never is.
            log.warning(
                "admin token refused",
                extra={"fields": {"event": "admin.auth", "client": address, "result": "wrong"}},
            )
        raise Unauthorized("admin token required")


async def metrics(request: web.Request) -> web.Response:
    services = _services(request)
    await refresh_token_gauge(services)
    await refresh_check_gauges(services)
    body = request.app[METRICS_TEXT]()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def refresh_token_gauge(services: Services) -> None:
    """``tokens_active{vendor}`` is read from the store at scrape time, not per request."""
    try:
        counts = await services.store.count_active(datetime.now(UTC))
    except ProxyError:
        return
    gauge = services.metrics.tokens_active
    for vendor in services.runtime.current.config.vendors:
        counts.setdefault(vendor, 0)
    for vendor, count in counts.items():
        gauge.labels(vendor).set(count)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services = _services(request)
    if request.app[STATE].draining:
        return web.json_response({"status": "draining"}, status=503)
    try:
        await services.store.ping()
    except ProxyError as err:
        return web.json_response({"status": "unavailable", "store": err.description}, status=503)
    if services.runtime.current is None:
        return web.json_response({"status": "unavailable", "config": "not loaded"}, status=503)
    return web.json_response({"status": "ready"})


def connection_view(conn: Connection, now: datetime) -> dict[str, Any]:
    cfg = conn.config
    return {
        "appId": cfg.app_id,
        "vendor": cfg.vendor,
        "district": conn.district.name,
        "base_url": conn.district.base_url,
        "auth": conn.district.auth,
        "signature_method": conn.district.signature_method
        if conn.district.auth == "oauth1"
        else None,
        "scopes": sorted(cfg.scopes),
        "enabled": cfg.enabled,
        "expires": cfg.expires.isoformat() if cfg.expires else None,
        "expired": cfg.expired(now),
        "drop_fields": list(cfg.drop_fields),
        "vendor_authorization": conn.vendor_header is not None,
        "max_connections": conn.district.max_connections,
        "rate_limit": None if conn.district.rate_limit is None else str(conn.district.rate_limit),
        "source": "config",
    }


async def connections(request: web.Request) -> web.Response:
    """The file's connections, then one page of the store's (``?after=<appId>&limit=N``,
    default 1000): ``next`` is the ``after`` of the following page, null after the last."""
    services = _services(request)
    now = datetime.now(UTC)
    runtime = services.runtime.current
    after = request.query.get("after", "")
    try:
        limit = max(1, min(5000, int(request.query.get("limit", "1000"))))
    except ValueError as exc:
        raise BadRequest("limit: must be a number") from exc
    views = []
    if not after:
        for app_id in sorted(runtime.connections):
            view = connection_view(runtime.connections[app_id], now)
            view["circuit"] = services.circuits.state(runtime.connections[app_id].district)
            views.append(view)
    records = await services.store.list_connections(after=after, limit=limit)
    for record in records:
        view = await admin_connections.store_connection_view(services, record, now)
        views.append(view)
    more = len(records) == limit
    return web.json_response({"connections": views, "next": records[-1].app_id if more else None})


async def connection(request: web.Request) -> web.Response:
    services = _services(request)
    app_id = request.match_info["app_id"]
    conn = services.runtime.current.connections.get(app_id)
    if conn is None:
        record = await services.store.get_connection(app_id)
        if record is None:
            raise NotFound("unknown application")
        view = await admin_connections.store_connection_view(services, record, datetime.now(UTC))
        results = await services.store.list_check_results(app_id, limit=1)
        view["last_check"] = results[0].as_json() if results else None
        return web.json_response(view)
    view = connection_view(conn, datetime.now(UTC))
    view["circuit"] = services.circuits.state(conn.district)
    # docs/checklist.md "Background checks": the newest stored result (check --json plus "at"), or
    # null.
    results = await services.store.list_check_results(conn.app_id, limit=1)
    view["last_check"] = results[0].as_json() if results else None
    return web.json_response(view)


async def post_check(request: web.Request) -> web.Response:
    services = _services(request)
    found = await find_connection(services, request.match_info["app_id"])
    if found is None:
        raise NotFound("unknown application")
    # Kept with the background results: the console's history shows checks run by hand too.
    report = await run_and_keep_check(services, found.connection)
    return web.json_response(report.as_json())


async def reload(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    try:
        config = await reload_config(gateway, interface="admin")
    except ConfigError as err:
        return web.json_response({"ok": False, "errors": err.problems}, status=400)
    return web.json_response(
        {"ok": True, "connections": len(config.connections), "warnings": list(config.warnings)}
    )


@admin_connections.answers(lambda request: "")
async def invite_connection(request: web.Request) -> web.Response:
    """docs/http-api.md "District intake": a one-time link for this appId; the URL is shown once.
    Refusals are this API's ``{"errors": [...]}`` (docs/commands.md "Connections in the store"),
    every
    problem of the body at once."""
    services = _services(request)
    body = await json_object(request)
    only_fields(body, "vendor", "district_name", "scopes", "ttl")
    problems: list[str] = []
    vendor = body.get("vendor")
    if not isinstance(vendor, str) or not vendor:
        problems.append("vendor: required")
    scopes = body.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        problems.append("scopes: must be a list of scope names")
    else:
        problems += [
            f'scopes[{i}]: unknown scope "{scope}"'
            for i, scope in enumerate(scopes)
            if scope not in SCOPES
        ]
    name = body.get("district_name")
    if name is not None and not isinstance(name, str):
        problems.append("district_name: must be a string")
    ttl = body.get("ttl")
    if ttl is not None and not isinstance(ttl, str):
        problems.append("ttl: must be a string")
    else:
        try:
            invites.parse_ttl(ttl)
        except BadRequest as err:
            problems.append(err.description)
    if problems:
        raise ConfigError(problems)
    assert isinstance(vendor, str) and isinstance(scopes, list)
    runtime = services.runtime.current
    made = await invites.create_invite(
        services.store,
        invites.Names.of(runtime.config),
        app_id=request.match_info["app_id"],
        vendor=vendor,
        district_name=name,
        scopes=scopes,
        ttl=invites.parse_ttl(ttl),
        interface="admin",
    )
    return web.json_response(made.as_json(), status=201)


async def list_invites(request: web.Request) -> web.Response:
    """docs/http-api.md: the outstanding intake links (appId, vendor, district name, scopes,
    created, expires); never a link's token."""
    found = await invites.list_invites(_services(request).store)
    return web.json_response([invites.invite_view(i) for i in found])


async def revoke_invite(request: web.Request) -> web.Response:
    """docs/http-api.md: end the appId's outstanding link (204; 404 when there is none)."""
    await invites.revoke_invite(
        _services(request).store, request.match_info["app_id"], interface="admin"
    )
    return web.Response(status=204)


async def activity(request: web.Request) -> web.Response:
    """This process's last hour per appId, per minute (requests, errors): what the console's
    board draws; the ``--workers`` supervisor adds up every worker's."""
    services = _services(request)
    snapshot = services.metrics.activity.snapshot()
    return web.json_response({"apps": {a: [list(m) for m in v] for a, v in snapshot.items()}})
