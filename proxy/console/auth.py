"""Signing in to the console with the admin token, and out (docs/http-api.md)."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from proxy.console.core import CONSOLE, CSS, SESSION
from proxy.console.session import COOKIE, CSRF_COOKIE, new_csrf, same

log = logging.getLogger("oneroster_proxy.console")


# -- sign in and out ---------------------------------------------------------------------------


async def signin_form(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    if await console.session_of(request) is not None:
        raise web.HTTPSeeOther("/console/")
    csrf = new_csrf()
    response = console.render(request, "signin.html", csrf_token=csrf)
    console.set_cookie(response, CSRF_COOKIE, csrf)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not same(
        sent, request.cookies.get(console.cookie_name(CSRF_COOKIE))
    ):
        raise web.HTTPForbidden(text="The form's CSRF token is missing or wrong; reload the page.")
    address = request.remote or "-"
    wait = console.guard.retry_after(address)
    if wait:
        # SECURITY: more than 10 wrong admin tokens from this address this minute
        # (THREAT_MODEL.md "Admin API and console"); the right one waits too.
        response = _refused(request, address, 429, "Too many wrong tokens; try again later.")
        response.headers["Retry-After"] = str(wait)
        return response
    expected = console.services.runtime.current.config.admin.token
    given = form.get("token")
    given_bytes = (
        given.strip().encode("utf-8", "surrogateescape") if isinstance(given, str) else b""
    )
    key = console.key()
    # SECURITY: constant-time comparison; no admin token configured means no console.
    if not expected or key is None or not hmac.compare_digest(given_bytes, expected.encode()):
        console.guard.wrong(address)
        return _refused(request, address, 401, "That is not the admin token.")
    cookie, _ = await console.sessions.issue(key, console.services.store)
    response = web.HTTPSeeOther("/console/")
    console.set_cookie(response, COOKIE, cookie)
    console.del_cookie(response, CSRF_COOKIE)
    log.info("console sign-in", extra={"fields": {"event": "console.signin", "result": "ok"}})
    raise response


def _refused(request: web.Request, address: str, status: int, text: str) -> web.Response:
    """The sign-in form again, saying why; the refusal is logged, never the token sent."""
    console = request.app[CONSOLE]
    result = "throttled" if status == 429 else "wrong"
    log.warning(
        "console sign-in refused",
        extra={"fields": {"event": "console.signin", "client": address, "result": result}},
    )
    csrf = new_csrf()
    response = console.render(
        request,
        "signin.html",
        status=status,
        csrf_token=csrf,
        notices=[{"kind": "fail", "text": text}],
    )
    console.set_cookie(response, CSRF_COOKIE, csrf)
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    await console.sessions.sign_out(request[SESSION], console.services.store)
    response = web.HTTPSeeOther("/console/signin")
    console.del_cookie(response, COOKIE)
    raise response


async def stylesheet(request: web.Request) -> web.StreamResponse:
    return web.Response(body=CSS, content_type="text/css", headers={"Cache-Control": "max-age=300"})
