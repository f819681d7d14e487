"""The console's vendor and audit pages (docs/http-api.md): a vendor's tokens (issue with a
TTL, rotate with a grace, revoke; a new token shown once, on the page that issued it) and the
audit trail, newest first, filtered by action and appId."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from proxy import tokens
from proxy.config import details_text, parse_duration
from proxy.console.views import console_of, when
from proxy.errors import BadRequest, NotFound

# -- a vendor's tokens -------------------------------------------------------------------------


def _vendor(request: web.Request) -> str:
    vendor = request.match_info["vendor"]
    if vendor not in console_of(request).services.runtime.current.config.vendors:
        raise NotFound("There is no vendor of that name.")
    return vendor


async def vendor(request: web.Request, **extra: Any) -> web.StreamResponse:
    console = console_of(request)
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


def _duration(form: Any, name: str, *, required: bool) -> timedelta | None:
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
    services = console_of(request).services
    name = _vendor(request)
    form = await request.post()
    issued = await tokens.issue(
        services.store, name, ttl=_duration(form, "ttl", required=False), interface="console"
    )
    new = {"id": issued.record.id, "token": issued.token}
    return await vendor(request, new_token=new)


async def rotate(request: web.Request) -> web.StreamResponse:
    services = console_of(request).services
    name = _vendor(request)
    form = await request.post()
    grace = _duration(form, "grace", required=True) or timedelta(0)
    issued, ending = await tokens.rotate(services.store, name, grace=grace, interface="console")
    for token_id in ending:
        services.authenticator.forget(token_id)
    services.authenticator.forget_cutoff(name)  # a "0s" rotation ends the vendor's JWTs too
    new = {"id": issued.record.id, "token": issued.token}
    text = f"Rotated: {len(ending)} older token(s) end after the grace."
    return await vendor(request, new_token=new, notices=[{"kind": "ok", "text": text}])


async def revoke(request: web.Request) -> web.StreamResponse:
    services = console_of(request).services
    name = _vendor(request)
    form = await request.post()
    token_id = str(form.get("token_id", ""))
    record = await services.store.get_token(token_id)
    # SECURITY: only a token of the vendor whose page this is.
    if record is None or record.vendor != name:
        raise NotFound("That vendor has no token with that id.")
    if record.revoked is not None:  # nothing to do, and no second audit event
        text = f"Token {token_id} was already revoked."
    else:
        await tokens.revoke(services.store, token_id, interface="console")
        text = f"Token {token_id} revoked."
    services.authenticator.forget(token_id)
    return await vendor(request, notices=[{"kind": "ok", "text": text}])


# -- the audit trail ---------------------------------------------------------------------------


def _app_of(detail: dict[str, Any]) -> str | None:
    for name in ("app_id", "appId", "app"):
        value = detail.get(name)
        if isinstance(value, str):
            return value
    return None


async def audit(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
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
        detail = details_text(event.detail, leave_out=("app_id", "appId"))
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
