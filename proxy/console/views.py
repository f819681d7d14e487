"""The console's pages (SPEC.md "Console"): the connections board, a connection's page, a
vendor's tokens, the audit trail. Each handler gathers plain values and renders a template; no
key or secret is ever among those values (a new vendor token, once, is the one exception)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from .. import invites, tokens
from ..catalog import Listed, check_connection, every_connection, find_connection
from ..check import HINTS
from ..errors import BadRequest, NotFound
from ..scopes import SCOPE_ORDER
from ..store.base import CheckResult
from .core import CONSOLE, Console

_VERSIONS = {"v1p1": "1.1", "v1p2": "1.2"}


def _console(request: web.Request) -> Console:
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


def spark(minutes: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Twelve bars of five minutes: (x, requests height, errors height), 16 px high."""
    buckets = [
        (sum(r for r, _ in minutes[i : i + 5]), sum(e for _, e in minutes[i : i + 5]))
        for i in range(0, len(minutes), 5)
    ]
    peak = max([r for r, _ in buckets] + [1])
    return [
        (i * 5, math.ceil(r * 16 / peak), math.ceil(e * 16 / peak))
        for i, (r, e) in enumerate(buckets)
    ]


async def _connection(request: web.Request) -> Listed:
    found = await find_connection(_console(request).services, request.match_info["app_id"])
    if found is None:
        raise NotFound("There is no connection with that appId.")
    return found


# -- the board ---------------------------------------------------------------------------------


async def board(request: web.Request, **extra: Any) -> web.StreamResponse:
    console = _console(request)
    services = console.services
    runtime = services.runtime.current
    today = datetime.now(UTC).date()
    vendor = request.query.get("vendor", "")
    failing_only = request.query.get("failing") == "1"
    every = await every_connection(services)
    last = await services.store.last_check_results([c.app_id for c in every])
    hour = await console.last_hour()
    quiet = [(0, 0)] * 60
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
        requests = sum(r for r, _ in minutes)
        errors = sum(e for _, e in minutes)
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
                "errors": errors,
                "error_share": f"{errors / requests:.0%}" if requests else "0%",
                "spark": spark(minutes),
                "circuit": services.limits.circuit_state(conn.district),
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
        **extra,
    )


async def invite_new(request: web.Request) -> web.StreamResponse:
    console = _console(request)
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
        notices=[{"kind": "ok", "text": f"Invite made for {made.record.app_id}."}],
    )


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
    console = _console(request)
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
        "circuit": services.limits.circuit_state(district),
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
    services = _console(request).services
    listed = await _connection(request)
    report = await check_connection(services, listed.connection)
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
    from . import manage

    listed = await _connection(request)
    await manage.set_enabled(_console(request).services, listed.app_id, enabled)
    word = "enabled" if enabled else "disabled"
    return await connection(request, notices=[{"kind": "ok", "text": f"Connection {word}."}])


async def renew(request: web.Request) -> web.StreamResponse:
    from . import manage

    listed = await _connection(request)
    form = await request.post()
    await manage.renew(
        _console(request).services,
        listed.app_id,
        key=str(form.get("key", "")),
        secret=str(form.get("secret", "")),
        expires=str(form.get("expires", "")),
    )
    return await connection(
        request, notices=[{"kind": "ok", "text": "New credentials saved; in use now."}]
    )


async def invite_again(request: web.Request) -> web.StreamResponse:
    console = _console(request)
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
    return await connection(request, invite_url=made.url)


# -- a vendor's tokens -------------------------------------------------------------------------


def _vendor(request: web.Request) -> str:
    vendor = request.match_info["vendor"]
    if vendor not in _console(request).services.runtime.current.config.vendors:
        raise NotFound("There is no vendor of that name.")
    return vendor


async def vendor(request: web.Request, **extra: Any) -> web.StreamResponse:
    console = _console(request)
    name = _vendor(request)
    now = datetime.now(UTC)
    records = await console.services.store.list_tokens(name)
    rows = []
    for record in reversed(records):  # newest first
        state = "active"
        if record.revoked is not None and record.revoked <= now:
            state = "revoked"
        elif record.expires is not None and record.expires <= now:
            state = "expired"
        rows.append(
            {
                "id": record.id,
                "prefix": record.prefix,
                "created": when(record.created),
                "expires": when(record.expires),
                "last_used": when(record.last_used),
                "state": state,
            }
        )
    return console.render(
        request,
        "vendor.html",
        vendor=name,
        tokens=rows,
        new_token=extra.pop("new_token", None),
        **extra,
    )


def _duration(form: Any, name: str, *, required: bool) -> Any:
    from datetime import timedelta

    from ..config import parse_duration

    value = str(form.get(name, "")).strip()
    if not value:
        if required:
            raise BadRequest(f"{name}: required")
        return None
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from exc


async def issue(request: web.Request) -> web.StreamResponse:
    services = _console(request).services
    name = _vendor(request)
    form = await request.post()
    issued = await tokens.issue(
        services.store, name, ttl=_duration(form, "ttl", required=False), interface="console"
    )
    new = {"id": issued.record.id, "token": issued.token}
    return await vendor(request, new_token=new)


async def rotate(request: web.Request) -> web.StreamResponse:
    services = _console(request).services
    name = _vendor(request)
    form = await request.post()
    grace = _duration(form, "grace", required=True)
    issued, ending = await tokens.rotate(services.store, name, grace=grace, interface="console")
    for token_id in ending:
        services.authenticator.forget(token_id)
    new = {"id": issued.record.id, "token": issued.token}
    text = f"Rotated: {len(ending)} older token(s) end after the grace."
    return await vendor(request, new_token=new, notices=[{"kind": "ok", "text": text}])


async def revoke(request: web.Request) -> web.StreamResponse:
    services = _console(request).services
    name = _vendor(request)
    form = await request.post()
    token_id = str(form.get("token_id", ""))
    record = await services.store.get_token(token_id)
    # SECURITY: only a token of the vendor whose page this is.
    if record is None or record.vendor != name:
        raise NotFound("That vendor has no token with that id.")
    await tokens.revoke(services.store, token_id, interface="console")
    services.authenticator.forget(token_id)
    return await vendor(request, notices=[{"kind": "ok", "text": f"Token {token_id} revoked."}])


# -- the audit trail ---------------------------------------------------------------------------


def _app_of(detail: dict[str, Any]) -> str | None:
    for name in ("app_id", "appId", "app"):
        value = detail.get(name)
        if isinstance(value, str):
            return value
    return None


async def audit(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    action = request.query.get("action", "")
    app = request.query.get("app", "").strip()
    events = await console.services.store.list_audit(limit=1000)
    actions = sorted({e.action for e in events})
    rows = []
    for event in reversed(events):  # newest first
        app_id = _app_of(event.detail)
        if action and event.action != action:
            continue
        if app and app_id != app:
            continue
        detail = ", ".join(
            f"{k}={v}" for k, v in sorted(event.detail.items()) if k not in ("app_id", "appId")
        )
        rows.append(
            {
                "when": event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                "action": event.action,
                "interface": event.interface,
                "app_id": app_id,
                "vendor": event.vendor,
                "token_id": event.token_id,
                "detail": detail,
            }
        )
    return console.render(
        request, "audit.html", events=rows, actions=actions, action=action, app=app
    )
