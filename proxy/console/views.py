"""The console's pages (docs/http-api.md): the connections board, a connection's page, a
vendor's tokens, the audit trail. Each handler gathers plain values and renders a template; no
key or secret is ever among those values (a new vendor token, once, is the one exception)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from proxy.activity import MINUTES, QUIET, Minute
from proxy.check import HINTS
from proxy.check.catalog import Listed, every_connection, find_connection, run_and_keep_check
from proxy.connections import invites
from proxy.console.core import CONSOLE, Console
from proxy.console.manage import renew as renew_credentials
from proxy.console.manage import set_enabled
from proxy.courtesy import describe_now, paused
from proxy.errors import NotFound
from proxy.scopes import SCOPE_ORDER
from proxy.store.base import CheckResult

_VERSIONS = {"v1p1": "1.1", "v1p2": "1.2"}


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def when(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def days_left(expires: date | None, today: date) -> int | None:
    return None if expires is None else (expires - today).days


@dataclass(frozen=True, slots=True)
class Failing:
    name: str
    detail: str
    hint: str


@dataclass(frozen=True, slots=True)
class CheckView:
    ok: bool
    when: str
    failing: Failing | None


def check_view(result: CheckResult) -> CheckView:
    failing = None
    for item in result.document.get("checks", []):
        if item.get("status") == "fail":
            name = str(item.get("name", ""))
            failing = Failing(name, str(item.get("detail", "")), HINTS.get(name, ""))
            break
    return CheckView(ok=result.ok, when=when(result.at), failing=failing)


def spark(minutes: list[Minute]) -> list[tuple[int, int, int, int]]:
    """Twelve bars of five minutes: (x, requests height, refused height, errors height), 16 px
    high; refused and errors are drawn over the requests bar, refused stacked on errors."""
    buckets = [
        (
            sum(m[0] for m in minutes[i : i + 5]),
            sum(m[1] for m in minutes[i : i + 5]),
            sum(m[2] for m in minutes[i : i + 5]),
        )
        for i in range(0, len(minutes), 5)
    ]
    peak = max([b[0] for b in buckets] + [1])

    def height(n: int) -> int:
        return math.ceil(n * 16 / peak)

    return [(i * 5, height(r), height(f + e), height(e)) for i, (r, f, e) in enumerate(buckets)]


def share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "0%"


async def _connection(request: web.Request) -> Listed:
    found = await find_connection(console_of(request).services, request.match_info["app_id"])
    if found is None:
        raise NotFound("There is no connection with that appId.")
    return found


# -- the board ---------------------------------------------------------------------------------


async def board(request: web.Request, **extra: Any) -> web.StreamResponse:
    console = console_of(request)
    services = console.services
    runtime = services.runtime.current
    today = datetime.now(UTC).date()
    wall = datetime.fromtimestamp(services.limits.wall(), UTC)
    vendor = request.query.get("vendor", "")
    failing_only = request.query.get("failing") == "1"
    every = await every_connection(services)
    last = await services.store.last_check_results([c.app_id for c in every])
    hour = await console.last_hour()
    quiet = [QUIET] * MINUTES
    rows = []
    for listed in every:
        conn, app_id = listed.connection, listed.app_id
        results = last.get(app_id)
        check = check_view(results[0]) if results else None
        if vendor and conn.config.vendor != vendor:
            continue
        if failing_only and (check is None or check.ok):
            continue
        minutes = hour.get(app_id, quiet)
        requests, refused, errors = (sum(m[k] for m in minutes) for k in range(3))
        rows.append(
            {
                "app_id": app_id,
                "source": listed.source,
                "vendor": conn.config.vendor,
                "district": conn.district.name,
                "auth": "OAuth 1.0a" if conn.district.auth == "oauth1" else "OAuth 2",
                "versions": ", ".join(_VERSIONS.get(v, v) for v in conn.district.versions),
                "enabled": conn.config.enabled,
                "days_left": days_left(conn.config.expires, today),
                "check": check,
                "requests": requests,
                "refused": refused,
                "refused_share": share(refused, requests),
                "errors": errors,
                "error_share": share(errors, requests),
                "spark": spark(minutes),
                "circuit": services.circuits.state(conn.district),
                "paused": paused(conn.district, wall) is not None,
            }
        )
    return console.render(
        request,
        "board.html",
        rows=rows,
        total=len(every),
        vendors=sorted(runtime.config.vendors),
        vendor=vendor,
        failing=failing_only,
        scopes=list(SCOPE_ORDER),
        invite_url=extra.pop("invite_url", None),
        outstanding=[
            {**invites.invite_view(i), "created": when(i.created), "expires": when(i.expires)}
            for i in await invites.list_invites(services.store)
        ],
        **extra,
    )


async def revoke_invite(request: web.Request) -> web.StreamResponse:
    """ "Revoke" of an outstanding intake link: its page answers 404 from now on."""
    app_id = request.match_info["app_id"]
    await invites.revoke_invite(console_of(request).services.store, app_id, interface="console")
    return await board(
        request, notices=[{"kind": "ok", "text": f"The intake link of {app_id} is revoked."}]
    )


async def invite_new(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    made = await _invite(
        console,
        app_id=str(form.get("app_id", "")).strip(),
        vendor=str(form.get("vendor", "")),
        district_name=str(form.get("district_name", "")).strip() or None,
        scopes=[str(s) for s in form.getall("scopes", [])],
        ttl=str(form.get("ttl", "")),
    )
    return await board(
        request,
        invite_url=made.url,
        notices=[
            {"kind": "ok", "text": f"Invite made for {made.record.app_id}."},
            *warned(made),
        ],
    )


def warned(made: invites.Invite) -> list[dict[str, str]]:
    return [{"kind": "warn", "text": f"Warning: {w}"} for w in made.warnings]


async def _invite(console: Console, **values: Any) -> invites.Invite:
    services = console.services
    runtime = services.runtime.current
    ttl = invites.parse_ttl(values.pop("ttl"))
    return await invites.create_invite(
        services.store,
        invites.Names.of(runtime.config),
        ttl=ttl,
        interface="console",
        **values,
    )


# -- one connection ----------------------------------------------------------------------------


async def connection(request: web.Request, **extra: Any) -> web.StreamResponse:
    console = console_of(request)
    services = console.services
    listed = await _connection(request)
    conn = listed.connection
    cfg, district = conn.config, conn.district
    history = await services.store.list_check_results(cfg.app_id)
    details = {
        "app_id": cfg.app_id,
        "vendor": cfg.vendor,
        "district": district.name,
        "base_url": district.base_url,
        "auth": "OAuth 1.0a" if district.auth == "oauth1" else "OAuth 2",
        "signature_method": district.signature_method if district.auth == "oauth1" else None,
        "token_url": district.token_url,
        "versions": ", ".join(_VERSIONS.get(v, v) for v in district.versions),
        "scopes": sorted(cfg.scopes),
        "enabled": cfg.enabled,
        "expires": cfg.expires.isoformat() if cfg.expires else None,
        "days_left": days_left(cfg.expires, datetime.now(UTC).date()),
        "vendor_authorization": conn.vendor_header is not None,
        "circuit": services.circuits.state(district),
        # docs/configuration.md "SIS courtesy": the window or pause in effect now.
        "courtesy": describe_now(district, datetime.fromtimestamp(services.limits.wall(), UTC)),
        "drop_fields": list(cfg.drop_fields),
        "source": listed.source,
    }
    return console.render(
        request,
        "connection.html",
        c=details,
        history=[check_view(h) for h in history],
        report=extra.pop("report", None),
        invite_url=extra.pop("invite_url", None),
        **extra,
    )


async def run_check_now(request: web.Request) -> web.StreamResponse:
    services = console_of(request).services
    listed = await _connection(request)
    report = await run_and_keep_check(services, listed.connection)
    shown = {
        "ok": report.ok,
        "summary": report.summary(),
        "checks": [
            {"name": i.name, "status": i.status, "detail": i.detail, "hint": HINTS[i.name]}
            for i in report.checks
        ],
    }
    return await connection(request, report=shown)


async def enable(request: web.Request) -> web.StreamResponse:
    return await _set_enabled(request, True)


async def disable(request: web.Request) -> web.StreamResponse:
    return await _set_enabled(request, False)


async def _set_enabled(request: web.Request, enabled: bool) -> web.StreamResponse:
    listed = await _connection(request)
    await set_enabled(console_of(request).services, listed.app_id, enabled)
    word = "enabled" if enabled else "disabled"
    return await connection(request, notices=[{"kind": "ok", "text": f"Connection {word}."}])


async def renew(request: web.Request) -> web.StreamResponse:
    listed = await _connection(request)
    form = await request.post()
    await renew_credentials(
        console_of(request).services,
        listed.app_id,
        key=str(form.get("key", "")),
        secret=str(form.get("secret", "")),
        expires=str(form.get("expires", "")),
    )
    return await connection(
        request, notices=[{"kind": "ok", "text": "New credentials saved; in use now."}]
    )


async def invite_again(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    conn = (await _connection(request)).connection
    form = await request.post()
    made = await _invite(
        console,
        app_id=conn.app_id,
        vendor=conn.config.vendor,
        district_name=conn.district.name,
        scopes=sorted(conn.config.scopes),
        ttl=str(form.get("ttl", "")),
    )
    return await connection(request, invite_url=made.url, notices=warned(made))
