"""The operators' console on the admin listener: ``/console/`` (docs/http-api.md).

Server-rendered HTML (Jinja2, autoescape on, no JavaScript), our own stylesheet served from
here, so nothing loads from elsewhere. ``page`` wraps every handler: it signs the operator in
(or sends them to the sign-in form), checks the CSRF token of every POST (403 without it),
renders any refusal as an HTML page rather than the API's JSON, and sets the headers every
answer carries: ``Content-Security-Policy: default-src 'self'``, no framing, no sniffing, no
caching, no Referer. The admin listener's bearer check does not apply to these routes; the
session cookie does (``proxy.console.session``).
"""

from __future__ import annotations

from aiohttp import web

from proxy.console import auth, shared, vendors, views
from proxy.console.core import CONSOLE, CSS, SECURITY_HEADERS, Console, page, templates

__all__ = ["CONSOLE", "CSS", "SECURITY_HEADERS", "add_console", "is_console_route", "templates"]


def add_console(admin: web.Application, gateway: web.Application) -> None:
    """Mount the console on the admin app (which reads the gateway's services)."""
    admin[CONSOLE] = Console(gateway)
    r = admin.router
    r.add_get("/console", _to_board)
    r.add_get("/console/static/console.css", page(auth.stylesheet, signed_in=False))
    r.add_get("/console/signin", page(auth.signin_form, signed_in=False))
    r.add_post("/console/signin", page(auth.signin, signed_in=False))
    r.add_post("/console/signout", page(auth.signout))
    r.add_get("/console/", page(views.board))
    r.add_post("/console/invite", page(views.invite_new))
    r.add_post("/console/invites/{app_id}/revoke", page(views.revoke_invite))
    r.add_get("/console/audit", page(vendors.audit))
    r.add_get("/console/connections/{app_id}", page(views.connection))
    r.add_post("/console/connections/{app_id}/check", page(views.run_check_now))
    r.add_post("/console/connections/{app_id}/enable", page(views.enable))
    r.add_post("/console/connections/{app_id}/disable", page(views.disable))
    r.add_post("/console/connections/{app_id}/renew", page(views.renew))
    r.add_post("/console/connections/{app_id}/invite", page(views.invite_again))
    r.add_get("/console/connections/{app_id}/shared", page(shared.connection_shared))
    r.add_post("/console/connections/{app_id}/sharing", page(shared.set_policy))
    r.add_get("/console/vendors/{vendor}", page(vendors.vendor))
    r.add_get("/console/vendors/{vendor}/shared", page(shared.vendor_shared))
    r.add_post("/console/vendors/{vendor}/issue", page(vendors.issue))
    r.add_post("/console/vendors/{vendor}/rotate", page(vendors.rotate))
    r.add_post("/console/vendors/{vendor}/revoke", page(vendors.revoke))


async def _to_board(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/console/")


def is_console_route(request: web.Request) -> bool:
    """Judged by the route the router matched, never by how the path was spelled."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.startswith("/console")
