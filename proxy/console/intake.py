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
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from proxy.check import run_check
from proxy.check.report import Item, Report
from proxy.config import ConnectionConfig, DistrictConfig
from proxy.config.model import DEFAULT_DROP_FIELDS
from proxy.connections.addresses import (
    AddressRefused,
    PinnedResolver,
    Refused,
    check_typed_url,
)
from proxy.connections.invites import find_invite, hash_token
from proxy.console.core import (
    CSS,
    SECURITY_HEADERS,
    cookie_name,
    no_favicon,
    set_cookie,
    templates,
)
from proxy.console.intake_words import SCOPE_LINES, VENDOR_SETUP, for_district, is_vendors
from proxy.console.manage import save_intake
from proxy.console.session import new_csrf, same
from proxy.errors import FROM_PROXY, NotFound, ProxyError
from proxy.gateway.context import SERVICES, Services
from proxy.gateway.forward import new_session
from proxy.scopes import SCOPE_ORDER, SCOPES
from proxy.store.base import AuditEvent, CheckResult, InviteRecord
from proxy.tokens import now_utc

log = logging.getLogger("oneroster_proxy.intake")
CSRF_COOKIE = "orp_intake_csrf"
SUBMISSIONS_PER_HOUR = 10
MAX_FIELD = 2048
MAX_FORM = 1024 * 1024
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


def _cookie_secure(request: web.Request) -> bool:
    public = _services(request).runtime.current.config.server.public_url or ""
    return public.startswith("https://")


def _allowed_scopes(invite: InviteRecord) -> list[str]:
    """What the visitor may tick: the invite's scopes; an invite that names none offers the
    read-only ones (never a write scope the operator did not name)."""
    allowed = set(invite.scopes) or {s for s in SCOPE_ORDER if s.endswith(".readonly")}
    return [s for s in SCOPE_ORDER if s in allowed]


def _campus(values: dict[str, Any]) -> bool:
    """Infinite Campus help applies: a key shaped like Campus's, or a Campus base path."""
    from proxy.config import infinite_campus_vendor_key

    key, base = str(values.get("key", "")), str(values.get("base_url", ""))
    return infinite_campus_vendor_key(key) is not None or "/campus/" in base.lower()


async def _sharing(services: Services, invite: InviteRecord) -> list[str]:
    """The sharing policy the connection has (or will have): shown to the district, not
    changed by it (docs/configuration.md, ``drop_fields``)."""
    existing = await services.store.get_connection(invite.app_id)
    if existing is not None and existing.drop_fields is not None:
        return list(existing.drop_fields)
    return list(DEFAULT_DROP_FIELDS)


def _form_page(
    request: web.Request,
    invite: InviteRecord,
    values: dict[str, Any],
    drop_fields: list[str],
    *,
    status: int = 200,
    errors: list[str] | None = None,
    checks: list[dict[str, str]] | None = None,
) -> web.Response:
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
        scopes=_allowed_scopes(invite),
        scope_lines=SCOPE_LINES,
        campus=_campus(values),
        drop_fields=drop_fields,
        expires=invite.expires.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        action=request.path,
        csrf_token=csrf,
    )
    set_cookie(response, CSRF_COOKIE, csrf, secure=_cookie_secure(request), path="/intake/")
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
        "scopes": _allowed_scopes(invite),
    }
    return _form_page(request, invite, values, await _sharing(_services(request), invite))


def _refusal(request: web.Request, status: int, reason: str, message: str) -> web.Response:
    return _render(
        request,
        "error.html",
        status=status,
        code=status,
        reason=reason,
        message=message,
        csrf_token="",
    )


async def submit(request: web.Request) -> web.StreamResponse:
    services = _services(request)
    token = request.match_info["token"]
    try:
        invite = await find_invite(services.store, token)
    except NotFound:
        return _gone(request)
    except ProxyError as err:
        return _refusal(request, err.status, "Unavailable", err.description)
    length = request.content_length
    if length is None or length > MAX_FORM:
        # A form is a few KB; its length is known (browsers always send it) and bounded.
        return _refusal(request, 400, "Bad Request", "The form is too large; reload the page.")
    try:
        form = await request.post()
    except (ValueError, UnicodeError, web.HTTPRequestEntityTooLarge):
        return _refusal(request, 400, "Bad Request", "The form could not be read; reload the page.")
    cookie = request.cookies.get(cookie_name(CSRF_COOKIE, _cookie_secure(request)))
    # SECURITY: the CSRF token is checked before the link's budget is touched: posts that are
    # not from the page (no or a wrong token) cannot spend the district's ten tries an hour.
    if not same(_text(form.get("csrf")), cookie):
        return _refusal(
            request,
            403,
            "Forbidden",
            "The form's CSRF token is missing or wrong; reload the page and try again.",
        )
    # SECURITY: at most 10 submissions per link per hour, counted in the store (every replica).
    wait = await services.store.take_tokens(
        f"intake:{invite.token_hash}", SUBMISSIONS_PER_HOUR / 3600.0, SUBMISSIONS_PER_HOUR
    )
    if wait > 0:
        response = _refusal(
            request, 429, "Too Many Requests", "Too many attempts with this link; try again later."
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    config = services.runtime.current.config
    private_ok = config.server.intake_private_networks
    values, secret, errors = read_form(form, invite, private_ok=private_ok)
    resolver = PinnedResolver(private_ok=private_ok)
    if not errors:
        errors = await _resolvable(resolver, values)
    if errors:
        sharing = await _sharing(_services(request), invite)
        return _form_page(request, invite, values, sharing, status=400, errors=errors)
    vendor = config.vendors.get(invite.vendor)
    if vendor is None:
        await _blocked(services, invite, ["vendor"])
        return _refusal(request, 409, "Not ready", VENDOR_SETUP)
    district, conn = build(invite, values, secret, vendor.vendor_authorization is not None)
    # SECURITY: the checks of an intake never send the vendor's x-vendor-authorization (one
    # secret for every Infinite Campus district) to the address typed here: the trial district
    # has it off, and the item is judged when the operator checks the saved connection.
    trial = dataclasses.replace(
        config,
        districts={
            **config.districts,
            district.name: dataclasses.replace(district, vendor_authorization=False),
        },
        connections={conn.app_id: conn},
    )
    session = new_session(resolver=resolver)
    try:
        report = await run_check(trial, conn.app_id, session=session)
    finally:
        await session.close()
    report = _vendor_authorization_later(report)
    campus = _campus(values)
    checks = [for_district(i, campus=campus) for i in report.checks]
    _log(invite, "checked" if not report.ok else "passed", report.ok)
    vendors = [i.name for i in report.checks if is_vendors(i)]
    if vendors:
        await _blocked(services, invite, vendors)
    if not report.ok:
        sharing = await _sharing(_services(request), invite)
        return _form_page(request, invite, values, sharing, status=422, checks=checks)
    try:
        await save_intake(services, invite, district, conn)
    except NotFound:
        return _gone(request)  # another submission won the race, or the link was revoked
    except ProxyError as err:
        # SECURITY: refused in the step that saves (another connection took the district
        # meanwhile): nothing was written and the link is not spent.
        return _refusal(
            request,
            err.status,
            "Not saved",
            "This district cannot be connected with this link; ask the vendor for a new one.",
        )
    # The passing run is the connection's first check: the board shows it green at once.
    await services.store.add_check_result(
        CheckResult(app_id=conn.app_id, at=now_utc(), document=report.as_json())
    )
    _log(invite, "saved", True)
    return _render(request, "intake.html", invite=invite, saved=True, checks=checks, csrf_token="")


def _vendor_authorization_later(report: Report) -> Report:
    """The ``vendor_authorization`` item is ``skip`` on the intake page: the vendor's header
    was not sent (see ``submit``); the operator's first check of the saved connection judges
    it."""
    item = Item("vendor_authorization", "skip", "verified once the operator checks the connection")
    checks = [item if i.name == item.name else i for i in report.checks]
    return Report(report.app, all(i.status != "fail" for i in checks), checks)


async def _blocked(services: Services, invite: InviteRecord, items: list[str]) -> None:
    """A failure only the vendor or operator can fix goes into the audit trail."""
    await services.store.add_audit(
        AuditEvent(
            at=now_utc(),
            action="connection.intake_blocked",
            interface="intake",
            vendor=invite.vendor,
            detail={"app_id": invite.app_id, "items": items},
        )
    )


async def _resolvable(resolver: PinnedResolver, values: dict[str, Any]) -> list[str]:
    """Each typed URL's host resolved once (and pinned for the checks); a refused address is
    a problem naming the field. A name that does not resolve is left to the checklist
    (``district_reachable`` / ``token_endpoint`` fail)."""
    fields = [("Base URL", values["base_url"])]
    if values["auth"] == "oauth2":
        fields.append(("Token URL", values["token_url"]))
    for label, value in fields:
        parts = urlsplit(value)
        # The name as the connector will ask for it (IDNA), so the pinned answer is the one used.
        host = (parts.hostname or "").encode("idna").decode("ascii")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            await resolver.resolve(host, port, family=socket.AF_UNSPEC)
        except AddressRefused as exc:
            return [f"{label}: {exc}"]
        except OSError:
            pass  # no answer: the checklist says the server cannot be reached
    return []


def _text(value: Any) -> str:
    """A form value as text; anything else (a file, text that is not valid Unicode) is ""."""
    if not isinstance(value, str):
        return ""
    try:
        value.encode("utf-8")
    except UnicodeError:
        return "\ufffd"
    return value


def read_form(
    form: Any, invite: InviteRecord, *, private_ok: bool
) -> tuple[dict[str, Any], str, list[str]]:
    """The entered values (never the secret), the secret, and every problem, one line each,
    each naming its field."""
    errors: list[str] = []
    ticked = [_text(s) for s in form.getall("scopes", [])]
    values: dict[str, Any] = {
        "base_url": _text(form.get("base_url")).strip()[:MAX_FIELD],
        "versions": [v for v in form.getall("versions", []) if v in ("v1p1", "v1p2")],
        "auth": _text(form.get("auth")),
        "token_url": _text(form.get("token_url")).strip()[:MAX_FIELD],
        "key": _text(form.get("key")).strip()[:MAX_FIELD],
        "scopes": [s for s in ticked if s in SCOPES],
    }
    secret = _text(form.get("secret")).strip()
    base = values["base_url"]
    cut = base.find("/ims/oneroster")
    if cut >= 0:  # a pasted endpoint URL: keep what comes before, as the config wants it
        base = values["base_url"] = base[:cut]
    for label, key in (("Base URL", "base_url"), ("Token URL", "token_url")):
        if key == "token_url" and values["auth"] != "oauth2":
            continue
        if not values[key]:
            errors.append(f"{label}: enter the https:// address")
            continue
        if "\ufffd" in values[key]:  # bytes that were not UTF-8, or a lone surrogate
            errors.append(f"{label}: not valid text")
            continue
        try:
            check_typed_url(label, values[key], private_ok=private_ok)
        except Refused as err:
            errors.append(err.description)
    if not values["versions"]:
        errors.append("OneRoster versions: tick OneRoster 1.1, OneRoster 1.2 or both")
    if values["auth"] not in ("oauth1", "oauth2"):
        errors.append("Authentication: choose OAuth 1.0a or OAuth 2")
        values["auth"] = "oauth1"
    if not values["key"]:
        errors.append("Key: required")
    elif "\ufffd" in values["key"] or not values["key"].isprintable():
        errors.append("Key: not valid text")
    if not secret:
        errors.append("Secret: required")
    elif len(secret) > MAX_FIELD:
        errors.append("Secret: too long")
    elif "\ufffd" in secret or not secret.isprintable():
        errors.append("Secret: not valid text")
    allowed = _allowed_scopes(invite)
    # SECURITY: the visitor grants at most what the invite names (the district may share
    # less, never more).
    for scope in ticked:
        if scope not in allowed:
            errors.append(f'Data to Share: "{scope[:64]}" is not part of this invitation')
    values["scopes"] = [s for s in values["scopes"] if s in allowed]
    if not values["scopes"]:
        errors.append("Data to Share: tick at least one")
    return values, secret, errors


def build(
    invite: InviteRecord, values: dict[str, Any], secret: str, vendor_has_header: bool
) -> tuple[DistrictConfig, ConnectionConfig]:
    from proxy.config import infinite_campus_vendor_key

    # Infinite Campus keys mean gradebook calls want the vendor's own header too (sent only
    # once the connection is saved, and verified by the operator's check).
    ic = infinite_campus_vendor_key(values["key"]) is not None
    district = DistrictConfig(
        name=invite.district_name,
        base_url=values["base_url"].rstrip("/"),
        auth=values["auth"],
        token_url=values["token_url"].rstrip("/") if values["auth"] == "oauth2" else None,
        vendor_authorization=ic and vendor_has_header,
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
