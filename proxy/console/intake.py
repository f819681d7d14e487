"""The district intake page: ``/intake/<token>`` on the gateway listener (docs/http-api.md), where
district IT connects its OneRoster server itself.

GET shows the form (Base URL, versions, OAuth 1.0a / OAuth 2, Token URL, Key, Secret, the
"Data to Share" preset from the invite). POST runs the whole checklist live against exactly
what was entered, through the code ``check`` uses, and shows every item with its hint. When no
item fails, the link is spent (one atomic step in the store, so two racing submissions cannot
both win), the district and connection are saved (the secret sealed by the store) and serve at
once. Otherwise the form comes back with what was entered, never the secret.

What a link can do is fixed by its invite, not by the form: the appId, the vendor and the
district's name come from the store, so a link cannot read or change any other connection.
Unknown, expired and spent links all answer the same 404; more than 10 submissions per link
per hour answer 429; the form carries a CSRF token (double-submit cookie: there is no session
here). The token never reaches a log line: requests here are logged with the appId only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from proxy.check import HINTS, run_check
from proxy.config import ConnectionConfig, DistrictConfig
from proxy.connections.invites import find_invite, hash_token
from proxy.console.core import CSS, SECURITY_HEADERS, no_favicon, templates
from proxy.console.manage import save_intake
from proxy.console.session import new_csrf, same
from proxy.errors import FROM_PROXY, NotFound, ProxyError
from proxy.gateway.context import SERVICES, Services
from proxy.scopes import SCOPE_ORDER, SCOPES
from proxy.store.base import CheckResult, InviteRecord
from proxy.tokens import now_utc

log = logging.getLogger("oneroster_proxy.intake")
CSRF_COOKIE = "orp_intake_csrf"
SUBMISSIONS_PER_HOUR = 10
MAX_FIELD = 2048
_ENV = web.AppKey("intake_templates", object)


def add_intake(app: web.Application) -> None:
    """Routes on the gateway app; registered before the gateway's catch-all."""
    app[_ENV] = templates()
    app.router.add_get("/favicon.ico", no_favicon)  # the intake page's browser asks for it
    app.router.add_get("/intake/static/console.css", stylesheet)
    app.router.add_get("/intake/{token}", _marked(show))
    app.router.add_post("/intake/{token}", _marked(submit))


def _marked(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """aiohttp's own answers raised on the way (a form body over its size limit) are the
    proxy's too (docs/http-api.md "Who made an answer"); the pages mark themselves."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            exc.headers.add(*FROM_PROXY)
            raise

    return run


async def stylesheet(request: web.Request) -> web.StreamResponse:
    response = web.Response(body=CSS, content_type="text/css")
    response.headers.update(SECURITY_HEADERS)
    response.headers.add(*FROM_PROXY)
    response.headers["Cache-Control"] = "max-age=300"
    return response


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def _render(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    env: Any = request.app[_ENV]
    values.setdefault("signed_in", False)
    values.setdefault("intake", True)  # error.html: the district intake's frame, not the console's
    values.setdefault("notices", [])
    values.setdefault("css_url", "/intake/static/console.css")
    body = env.get_template(name).render(**values)
    response = web.Response(status=status, text=body, content_type="text/html")
    response.headers.update(SECURITY_HEADERS)
    response.headers.add(*FROM_PROXY)
    return response


def _gone(request: web.Request) -> web.Response:
    return _render(
        request,
        "error.html",
        status=404,
        code=404,
        reason="Not Found",
        message=(
            "This intake link is unknown, expired or already used. Ask the vendor for a new one."
        ),
        csrf_token="",
    )


def _form_page(
    request: web.Request,
    invite: InviteRecord,
    values: dict[str, Any],
    *,
    status: int = 200,
    errors: list[str] | None = None,
    checks: list[dict[str, str]] | None = None,
) -> web.Response:
    services = _services(request)
    csrf = new_csrf()
    response = _render(
        request,
        "intake.html",
        status=status,
        invite=invite,
        values=values,
        errors=errors or [],
        checks=checks or [],
        failed=[c for c in checks or [] if c["status"] == "fail"],
        saved=False,
        scopes=list(SCOPE_ORDER),
        expires=invite.expires.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        action=request.path,
        csrf_token=csrf,
    )
    public = services.runtime.current.config.server.public_url or ""
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        path="/intake/",
        httponly=True,
        samesite="Strict",
        secure=public.startswith("https://"),
    )
    return response


async def show(request: web.Request) -> web.StreamResponse:
    try:
        invite = await find_invite(_services(request).store, request.match_info["token"])
    except NotFound:
        return _gone(request)
    values = {
        "base_url": "",
        "versions": ["v1p1", "v1p2"],
        "auth": "oauth1",
        "token_url": "",
        "key": "",
        "scopes": list(invite.scopes),
    }
    return _form_page(request, invite, values)


async def submit(request: web.Request) -> web.StreamResponse:
    services = _services(request)
    token = request.match_info["token"]
    try:
        invite = await find_invite(services.store, token)
    except NotFound:
        return _gone(request)
    except ProxyError as err:
        return _render(
            request,
            "error.html",
            status=err.status,
            reason="Unavailable",
            message=err.description,
            csrf_token="",
        )
    # SECURITY: at most 10 submissions per link per hour, counted in the store (every replica).
    wait = await services.store.take_tokens(
        f"intake:{invite.token_hash}", SUBMISSIONS_PER_HOUR / 3600.0, SUBMISSIONS_PER_HOUR
    )
    if wait > 0:
        response = _render(
            request,
            "error.html",
            status=429,
            code=429,
            reason="Too Many Requests",
            message="Too many attempts with this link; try again later.",
            csrf_token="",
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    form = await request.post()
    if not same(_text(form.get("csrf")), request.cookies.get(CSRF_COOKIE)):
        return _render(
            request,
            "error.html",
            status=403,
            code=403,
            reason="Forbidden",
            message="The form's CSRF token is missing or wrong; reload the page and try again.",
            csrf_token="",
        )
    values, secret, errors = read_form(form)
    if errors:
        return _form_page(request, invite, values, status=422, errors=errors)
    district, conn = build(invite, values, secret, services)
    config = services.runtime.current.config
    trial = dataclasses.replace(
        config,
        districts={**config.districts, district.name: district},
        connections={conn.app_id: conn},
    )
    report = await run_check(trial, conn.app_id, session=services.session)
    checks = [
        {"name": i.name, "status": i.status, "detail": i.detail, "hint": HINTS[i.name]}
        for i in report.checks
    ]
    _log(invite, "checked" if not report.ok else "passed", report.ok)
    if not report.ok:
        return _form_page(request, invite, values, status=422, checks=checks)
    if not await services.store.spend_invite(invite.token_hash, now_utc()):
        return _gone(request)  # another submission won the race
    try:
        await save_intake(services, invite, district, conn)
    except ProxyError as err:
        # Checked a moment ago, so rare (a name taken meanwhile); the link is spent either way.
        return _render(
            request,
            "error.html",
            status=err.status,
            code=err.status,
            reason="Not saved",
            message=f"{err.description}. Ask the vendor for a new link.",
            csrf_token="",
        )
    # The passing run is the connection's first check: the board shows it green at once.
    await services.store.add_check_result(
        CheckResult(app_id=conn.app_id, at=now_utc(), document=report.as_json())
    )
    _log(invite, "saved", True)
    return _render(request, "intake.html", invite=invite, saved=True, checks=checks, csrf_token="")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_form(form: Any) -> tuple[dict[str, Any], str, list[str]]:
    """The entered values (never the secret), the secret, and every problem, one line each."""
    errors: list[str] = []
    values: dict[str, Any] = {
        "base_url": _text(form.get("base_url")).strip()[:MAX_FIELD],
        "versions": [v for v in form.getall("versions", []) if v in ("v1p1", "v1p2")],
        "auth": _text(form.get("auth")),
        "token_url": _text(form.get("token_url")).strip()[:MAX_FIELD],
        "key": _text(form.get("key")).strip()[:MAX_FIELD],
        "scopes": [s for s in form.getall("scopes", []) if s in SCOPES],
    }
    secret = _text(form.get("secret")).strip()
    base = values["base_url"]
    cut = base.find("/ims/oneroster")
    if cut >= 0:  # a pasted endpoint URL: keep what comes before, as the config wants it
        base = values["base_url"] = base[:cut]
    if not _http_url(base):
        errors.append("Base URL: enter the https:// address of your OneRoster server")
    if not values["versions"]:
        errors.append("OneRoster versions: tick OneRoster 1.1, OneRoster 1.2 or both")
    if values["auth"] not in ("oauth1", "oauth2"):
        errors.append("Authentication: choose OAuth 1.0a or OAuth 2")
        values["auth"] = "oauth1"
    if values["auth"] == "oauth2" and not _http_url(values["token_url"]):
        errors.append("Token URL: OAuth 2 needs the https:// address of the token endpoint")
    if not values["key"]:
        errors.append("Key: required")
    if not secret:
        errors.append("Secret: required")
    elif len(secret) > MAX_FIELD:
        errors.append("Secret: too long")
    if not values["scopes"]:
        errors.append("Data to Share: tick at least one scope")
    return values, secret, errors


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query


def build(
    invite: InviteRecord, values: dict[str, Any], secret: str, services: Services
) -> tuple[DistrictConfig, ConnectionConfig]:
    from proxy.config import infinite_campus_vendor_key

    vendor = services.runtime.current.config.vendors[invite.vendor]
    # Infinite Campus keys mean gradebook calls want the vendor's own header too.
    ic = infinite_campus_vendor_key(values["key"]) is not None
    district = DistrictConfig(
        name=invite.district_name,
        base_url=values["base_url"].rstrip("/"),
        auth=values["auth"],
        token_url=values["token_url"].rstrip("/") if values["auth"] == "oauth2" else None,
        vendor_authorization=ic and vendor.vendor_authorization is not None,
        versions=tuple(v for v in ("v1p1", "v1p2") if v in values["versions"]),
    )
    conn = ConnectionConfig(
        app_id=invite.app_id,
        vendor=invite.vendor,
        district=invite.district_name,
        key=values["key"],
        secret=secret,
        scopes=frozenset(values["scopes"]),
    )
    return district, conn


def _log(invite: InviteRecord, result: str, ok: bool) -> None:
    log.info(
        "intake submission",
        extra={
            "fields": {
                "event": "connection.intake",
                "app": invite.app_id,
                "vendor": invite.vendor,
                "result": result,
                "ok": ok,
                # SECURITY: the link's hash prefix, never the token, identifies it in logs.
                "link": invite.token_hash[:12],
            }
        },
    )


__all__ = ["add_intake", "hash_token", "read_form"]
