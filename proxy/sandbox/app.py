"""The sandbox district's HTTP face: ``create_sandbox_app(options)``.

Implements docs/sandbox.md over HTTP: the middlewares (``proxy.sandbox.middleware``:
record, faults, imsx errors) in front of one dispatch (``proxy.sandbox.handlers``). Everything
hangs off the app under the typed ``web.AppKey``s of ``proxy.sandbox.state``, so tests run
several districts side by side and change faults or read what a district received while it runs.
"""

from __future__ import annotations

from aiohttp import web

from proxy.sandbox.auth import OAuth1Verifier, TokenStore
from proxy.sandbox.district import District
from proxy.sandbox.handlers import dispatch
from proxy.sandbox.middleware import MIDDLEWARES
from proxy.sandbox.options import SandboxOptions
from proxy.sandbox.render import HrefAbsolutizer
from proxy.sandbox.state import ALSO, DISTRICT, FAULTS, HREFS, OPTIONS, RECORDED, TOKENS, VERIFIER


def create_sandbox_app(options: SandboxOptions | None = None) -> web.Application:
    """A OneRoster district server built from ``options`` (credentials generated if unset)."""
    resolved = (options or SandboxOptions()).resolved()
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=64 * 1024**2)
    app[OPTIONS] = resolved
    app[FAULTS] = resolved.faults
    app[DISTRICT] = District(resolved)
    app[RECORDED] = []
    app[TOKENS] = TokenStore()
    app[VERIFIER] = OAuth1Verifier(str(resolved.key), str(resolved.secret))
    app[ALSO] = {}
    app[HREFS] = HrefAbsolutizer(resolved.base_path or "")
    # [\s\S]: unlike ".", it also matches a decoded newline (%0a), so every path reaches
    # dispatch and its imsx answers instead of aiohttp's plain-text 404.
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch)
    return app


def accept_credentials(app: web.Application, key: str, secret: str) -> None:
    """Accept ``key``/``secret`` too, as a district does while a renewal is rolled out: OAuth1
    signatures and OAuth2 token requests. Requests record which key signed them."""
    app[VERIFIER].accept(key, secret)
    app[ALSO][key] = secret


def revoke_all_tokens(app: web.Application) -> None:
    """Make every OAuth2 token this district issued stop working (tests of refetch-on-401)."""
    app[TOKENS].revoke_all()
