"""The console's frame (docs/http-api.md): the ``Console`` object on the admin app, the
templates (Jinja2, autoescape on), and ``page``, which wraps every console handler: it signs
the operator in (or sends them to the sign-in form), checks the CSRF token of every POST (403
without it), renders any refusal as an HTML page rather than the API's JSON, and sets the
headers every answer carries: ``Content-Security-Policy: default-src 'self'``, no framing, no
sniffing, no caching, no Referer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from proxy.activity import Minute, merge
from proxy.console.guard import TokenGuard
from proxy.console.session import COOKIE, Session, Sessions, same, session_key
from proxy.errors import ORIGIN, ProxyError
from proxy.gateway.context import SERVICES, Services

log = logging.getLogger("oneroster_proxy.console")
HERE = Path(__file__).parent
CSS = (HERE / "static" / "console.css").read_bytes()
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def no_favicon(request: web.Request) -> web.Response:
    """Every browser asks a site for ``/favicon.ico``; the proxy has none. A plain 404 on both
    listeners, outside the gateway's metrics and access log and the admin API's token check,
    so a page view is never counted or logged as a refused request (docs/metrics.md)."""
    return web.Response(status=404, headers={ORIGIN: "proxy", "Cache-Control": "max-age=86400"})


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
    # Wrong admin tokens per client address, for the console's sign-in and the admin API.
    guard: TokenGuard = field(default_factory=TokenGuard)
    # Under ``serve --workers N`` the supervisor serves this console and the workers serve the
    # traffic: it sets this to add up their activity (``proxy.serve.workers``).
    activity: Callable[[], Awaitable[dict[str, list[Minute]]]] | None = None

    async def last_hour(self) -> dict[str, list[Minute]]:
        own = self.services.metrics.activity.snapshot()
        if self.activity is None:
            return own
        return merge([own, await self.activity()])

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

    async def session_of(self, request: web.Request) -> Session | None:
        key = self.key()
        if key is None:
            return None
        cookie = request.cookies.get(self.cookie_name(COOKIE))
        return await self.sessions.check(key, cookie, self.services.store)

    def cookie_name(self, name: str) -> str:
        """``__Host-`` names where browsers allow them: Secure cookies, behind https."""
        return cookie_name(name, self.secure_cookies)

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
        set_cookie(response, name, value, secure=self.secure_cookies, path="/console/")

    def del_cookie(self, response: web.StreamResponse, name: str) -> None:
        secure = self.secure_cookies
        response.del_cookie(cookie_name(name, secure), path="/" if secure else "/console/")


def cookie_name(name: str, secure: bool) -> str:
    return f"__Host-{name}" if secure else name


def set_cookie(
    response: web.StreamResponse, name: str, value: str, *, secure: bool, path: str
) -> None:
    """HttpOnly, SameSite=Strict; behind https Secure with the ``__Host-`` prefix (which
    requires ``Path=/`` and no Domain), else scoped to ``path``."""
    response.set_cookie(
        cookie_name(name, secure),
        value,
        path="/" if secure else path,
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("console_session", Session)


def page(handler: Handler, *, signed_in: bool = True) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        try:
            if signed_in:
                session = await console.session_of(request)
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
            if exc.status == 413:  # the form itself is over the listener's 1 MB
                response = error_page(request, 400, "Bad Request", "body: larger than 1 MB")
            else:
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
        request, "error.html", status=status, code=status, reason=reason, message=message
    )


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
