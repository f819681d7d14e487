"""The operators' console on the admin listener: ``/console/`` (SPEC.md "Console").

Server-rendered HTML (Jinja2, autoescape on, no JavaScript), our own stylesheet served from
here, so nothing loads from elsewhere. ``page`` wraps every handler: it signs the operator in
(or sends them to the sign-in form), checks the CSRF token of every POST (403 without it),
renders any refusal as an HTML page rather than the API's JSON, and sets the headers every
answer carries: ``Content-Security-Policy: default-src 'self'``, no framing, no sniffing, no
caching, no Referer. The admin listener's bearer check does not apply to these routes; the
session cookie does (``proxy.console.session``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ..context import SERVICES, Services
from ..errors import ProxyError
from .session import COOKIE, CSRF_COOKIE, Session, Sessions, new_csrf, same, session_key

log = logging.getLogger("oneroster_proxy.console")
HERE = Path(__file__).parent
CSS = (HERE / "static" / "console.css").read_bytes()
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def templates() -> jinja2.Environment:
    # SECURITY: autoescape on for every template, whatever its name.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass
class Console:
    gateway: web.Application
    env: jinja2.Environment = field(default_factory=templates)
    sessions: Sessions = field(default_factory=Sessions)

    @property
    def services(self) -> Services:
        return self.gateway[SERVICES]

    def key(self) -> bytes | None:
        token = self.services.runtime.current.config.admin.token
        return session_key(token) if token else None

    @property
    def secure_cookies(self) -> bool:
        public = self.services.runtime.current.config.server.public_url or ""
        return public.startswith("https://")

    def session_of(self, request: web.Request) -> Session | None:
        key = self.key()
        return None if key is None else self.sessions.check(key, request.cookies.get(COOKIE))

    def render(
        self, request: web.Request, name: str, status: int = 200, **values: Any
    ) -> web.Response:
        session = request.get(SESSION)
        key = self.key()
        values.setdefault("csrf_token", session.csrf(key) if session and key else "")
        values.setdefault("signed_in", session is not None)
        values.setdefault("notices", [])
        values.setdefault("css_url", "/console/static/console.css")
        body = self.env.get_template(name).render(**values)
        return web.Response(status=status, text=body, content_type="text/html")

    def set_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            path="/console/",
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookies,
        )


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("console_session", Session)


def page(handler: Handler, *, signed_in: bool = True) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        try:
            if signed_in:
                session = console.session_of(request)
                if session is None:
                    raise web.HTTPSeeOther("/console/signin")
                request[SESSION] = session
                if request.method == "POST":
                    await _require_csrf(request, console, session)
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                exc.headers.update(SECURITY_HEADERS)
                raise
            response = error_page(request, exc.status, exc.reason, exc.text or exc.reason)
        except ProxyError as err:
            response = error_page(request, err.status, _reason(err.status), err.description)
        response.headers.update(SECURITY_HEADERS)
        return response

    return handle


async def _require_csrf(request: web.Request, console: Console, session: Session) -> None:
    form = await request.post()
    key = console.key()
    sent = form.get("csrf")
    # SECURITY: every state-changing form carries the session's CSRF token (OWASP
    # synchroniser token); a cross-site POST, which the SameSite cookie already stops in
    # current browsers, is refused here too.
    if key is None or not isinstance(sent, str) or not same(sent, session.csrf(key)):
        raise web.HTTPForbidden(text="The form's CSRF token is missing or wrong; reload the page.")


def error_page(request: web.Request, status: int, reason: str, message: str) -> web.Response:
    console = request.app[CONSOLE]
    return console.render(
        request, "error.html", status=status, reason=reason, message=message, notices=[]
    )


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# -- sign in and out ---------------------------------------------------------------------------


async def signin_form(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    if console.session_of(request) is not None:
        raise web.HTTPSeeOther("/console/")
    csrf = new_csrf()
    response = console.render(request, "signin.html", csrf_token=csrf)
    console.set_cookie(response, CSRF_COOKIE, csrf)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    import hmac

    console = request.app[CONSOLE]
    form = await request.post()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not same(sent, request.cookies.get(CSRF_COOKIE)):
        raise web.HTTPForbidden(text="The form's CSRF token is missing or wrong; reload the page.")
    expected = console.services.runtime.current.config.admin.token
    given = form.get("token")
    given_bytes = (
        given.strip().encode("utf-8", "surrogateescape") if isinstance(given, str) else b""
    )
    key = console.key()
    # SECURITY: constant-time comparison; no admin token configured means no console.
    if not expected or key is None or not hmac.compare_digest(given_bytes, expected.encode()):
        log.warning("console sign-in refused", extra={"fields": {"event": "console.signin"}})
        csrf = new_csrf()
        response = console.render(
            request,
            "signin.html",
            status=401,
            csrf_token=csrf,
            notices=[{"kind": "fail", "text": "That is not the admin token."}],
        )
        console.set_cookie(response, CSRF_COOKIE, csrf)
        return response
    cookie, _ = console.sessions.issue(key)
    response = web.HTTPSeeOther("/console/")
    console.set_cookie(response, COOKIE, cookie)
    response.del_cookie(CSRF_COOKIE, path="/console/")
    log.info("console sign-in", extra={"fields": {"event": "console.signin", "result": "ok"}})
    raise response


async def signout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    console.sessions.sign_out(request[SESSION])
    response = web.HTTPSeeOther("/console/signin")
    response.del_cookie(COOKIE, path="/console/")
    raise response


async def stylesheet(request: web.Request) -> web.StreamResponse:
    return web.Response(body=CSS, content_type="text/css", headers={"Cache-Control": "max-age=300"})


def add_console(admin: web.Application, gateway: web.Application) -> None:
    """Mount the console on the admin app (which reads the gateway's services)."""
    from . import views

    admin[CONSOLE] = Console(gateway)
    r = admin.router
    r.add_get("/console", lambda request: _to_board())
    r.add_get("/console/static/console.css", page(stylesheet, signed_in=False))
    r.add_get("/console/signin", page(signin_form, signed_in=False))
    r.add_post("/console/signin", page(signin, signed_in=False))
    r.add_post("/console/signout", page(signout))
    r.add_get("/console/", page(views.board))
    r.add_post("/console/invite", page(views.invite_new))
    r.add_get("/console/audit", page(views.audit))
    r.add_get("/console/connections/{app_id}", page(views.connection))
    r.add_post("/console/connections/{app_id}/check", page(views.run_check_now))
    r.add_post("/console/connections/{app_id}/enable", page(views.enable))
    r.add_post("/console/connections/{app_id}/disable", page(views.disable))
    r.add_post("/console/connections/{app_id}/renew", page(views.renew))
    r.add_post("/console/connections/{app_id}/invite", page(views.invite_again))
    r.add_get("/console/vendors/{vendor}", page(views.vendor))
    r.add_post("/console/vendors/{vendor}/issue", page(views.issue))
    r.add_post("/console/vendors/{vendor}/rotate", page(views.rotate))
    r.add_post("/console/vendors/{vendor}/revoke", page(views.revoke))


async def _to_board() -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/console/")


def is_console_route(request: web.Request) -> bool:
    """Judged by the route the router matched, never by how the path was spelled."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.startswith("/console")
