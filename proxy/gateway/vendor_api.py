"""Vendor-facing endpoints beside the gateway: ``GET /applications`` and ``POST /oauth/token``.

docs/http-api.md: discovery of a vendor's own connections, and the OAuth2
client-credentials grant (RFC 6749 §4.4) that issues HS256 JWTs accepted on the gateway like
opaque tokens. Errors of the token endpoint follow RFC 6749 §5.2, not the imsx shape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from proxy.bodies import read_up_to
from proxy.courtesy import paused
from proxy.errors import BadRequest, StoreUnavailable, Unauthorized
from proxy.forms import FORM_URLENCODED, is_form
from proxy.gateway.context import EXCHANGE, SERVICES
from proxy.gateway.inbound import Authenticator, encode_jwt
from proxy.gateway.jwt_cutoff import cut_second
from proxy.gateway.limits import TOKEN_FAILURES_PER_ADDRESS, TOKEN_FAILURES_PER_CLIENT
from proxy.gateway.rewrite import public_base
from proxy.scopes import SCOPES, parse_scope

if TYPE_CHECKING:
    from proxy.config import Config, Rate

_VERSION_NAMES = {"v1p1": "1.1", "v1p2": "1.2"}
_MAX_TOKEN_FORM = 8 * 1024
_PAGE = 500


async def applications(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    runtime = services.runtime.current
    config = runtime.config
    ex = request[EXCHANGE]
    try:
        principal = await services.authenticator.authenticate(
            request.headers.get("Authorization"), config.vendors, config.server.jwt_keys
        )
    except Unauthorized as exc:
        # As on the gateway: the log line says whose refused token it was.
        ex.token_id, ex.vendor = exc.token_id, exc.vendor or "-"
        raise
    ex.vendor = principal.vendor
    ex.token_id = principal.token_id
    base = public_base(
        request.scheme,
        request.host,
        request.headers.get("X-Forwarded-Proto"),
        request.headers.get("X-Forwarded-Host"),
        trust_forwarded=config.server.trust_forwarded,
        public_url=config.server.public_url,
    )
    now = datetime.now(UTC)
    apps = []
    mine = [c for c in runtime.connections.values() if c.config.vendor == principal.vendor]
    # The vendor's store connections too (docs/commands.md), a page at a time.
    after = ""
    while True:
        page = await services.store.list_connections(
            vendor=principal.vendor, after=after, limit=_PAGE
        )
        for record in page:
            if record.app_id not in runtime.connections:
                found = await services.store_connections.get(record.app_id, runtime)
                if found is not None and found.config.vendor == principal.vendor:
                    mine.append(found)
        if len(page) < _PAGE:
            break
        after = page[-1].app_id
    # Pauses are read on the limits' wall clock: the one the gateway refuses by.
    wall = datetime.fromtimestamp(services.limits.wall(), UTC)
    for conn in sorted(mine, key=lambda c: c.app_id):
        app_id = conn.app_id
        pause = paused(conn.district, wall)
        scopes = conn.config.scopes
        if principal.scopes is not None:
            scopes = scopes & principal.scopes
        apps.append(
            {
                "appId": app_id,
                "district": conn.district.name,
                "versions": [_VERSION_NAMES[v] for v in conn.district.versions],
                "scopes": sorted(scopes),
                "enabled": conn.config.enabled,
                "expired": conn.config.expired(now),
                "expires": conn.config.expires.isoformat() if conn.config.expires else None,
                "base_url": f"{base}/{app_id}/ims/oneroster",
                # docs/commands.md: every listing shows where it lives.
                "source": "config" if app_id in runtime.connections else "store",
                # docs/configuration.md "SIS courtesy": the last paused day, and why.
                "paused_until": pause.end.isoformat() if pause else None,
                "pause_reason": pause.reason if pause else None,
            }
        )
    return web.json_response({"applications": apps})


async def _after_cut(authenticator: Authenticator, vendor: str) -> None:
    """A JWT's ``iat`` is whole seconds and a cut ends its whole second
    (``proxy.gateway.jwt_cutoff``): right after one, wait for the next second so the new JWT is not
    born revoked."""
    try:
        cutoff = await authenticator.jwt_cutoff(vendor)
    except StoreUnavailable:
        return  # the JWT verifies without the store; a cut this second may refuse it later
    if cutoff is not None:
        wait = cut_second(cutoff) + 1 - time.time()
        if 0 < wait <= 2:  # more: a replica's clock far ahead; do not hold the request
            await asyncio.sleep(wait)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    response = web.json_response({"error": error, "error_description": description}, status=status)
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="oneroster-proxy"'
    return response


def _throttled(request: web.Request, wait: float) -> web.Response:
    request[EXCHANGE].error = "too many failed client authentications"
    response = _oauth_error(
        429, "slow_down", "too many failed client authentications; retry after Retry-After"
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def client_address(request: web.Request, trust_forwarded: bool) -> str:
    """Who is guessing: the peer's address, or behind a trusted balancer the address it
    appended last to ``X-Forwarded-For`` (the one a client cannot write). An IPv6 client is
    its /64, the block one host is usually given."""
    address = request.remote or "-"
    if trust_forwarded:
        forwarded = request.headers.getall("X-Forwarded-For", ())
        if forwarded:
            address = forwarded[-1].rpartition(",")[2].strip() or address
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _failure_buckets(
    request: web.Request, config: Config, candidates: list[tuple[str, str]]
) -> list[tuple[str, Rate]]:
    """The failure buckets of this attempt: its client address, and each vendor it names
    (only names the config knows: a client id chosen at random adds no bucket)."""
    address = client_address(request, config.server.trust_forwarded)
    buckets = [(f"token-failures:address:{address}", TOKEN_FAILURES_PER_ADDRESS)]
    for client_id, _ in candidates:
        bucket = (f"token-failures:client:{client_id}", TOKEN_FAILURES_PER_CLIENT)
        if client_id in config.vendors and bucket not in buckets:
            buckets.append(bucket)
    return buckets


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):  # ValueError: non-ASCII input
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return client_id, secret


async def token(request: web.Request) -> web.Response:
    """RFC 6749 §4.4 client credentials; client id = vendor name."""
    services = request.app[SERVICES]
    config = services.runtime.current.config
    if request.content_length is not None and request.content_length > _MAX_TOKEN_FORM:
        raise BadRequest("token request too large")
    raw = await read_up_to(request.content, _MAX_TOKEN_FORM + 1)
    if len(raw) > _MAX_TOKEN_FORM:
        raise BadRequest("token request too large")
    content_type = request.headers.get("Content-Type")
    if (raw or content_type is not None) and not is_form(content_type):
        # RFC 6749 §4.4.2: the parameters are a form body. A JSON body is a malformed request,
        # not bad credentials, whatever the Authorization header holds.
        request[EXCHANGE].error = "invalid_request"
        return _oauth_error(
            400, "invalid_request", f"the body must be {FORM_URLENCODED} (RFC 6749 section 4.4.2)"
        )
    try:
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the form must be UTF-8")

    candidates: list[tuple[str, str]] = []
    basic = _basic(request.headers.get("Authorization"))
    if basic is not None:
        # RFC 6749 §2.3.1 says client id and secret are form-encoded inside Basic; many clients
        # skip that, so try the credentials as sent first, then form-decoded.
        candidates.append(basic)
        decoded = (unquote_plus(basic[0]), unquote_plus(basic[1]))
        if decoded != basic:
            candidates.append(decoded)
    elif "client_id" in form:
        candidates.append((form.get("client_id", ""), form.get("client_secret", "")))

    # SECURITY: failed attempts are counted per client address and per client id (RFC 6749
    # §5.2 answers, docs/http-api.md): a bucket known to be empty refuses at once, the right
    # secret included, so the answer tells a guesser nothing; a good request costs no round
    # trip to the store.
    limits = services.limits
    buckets = _failure_buckets(request, config, candidates)
    wait = limits.failures_refused(buckets)
    if wait > 0:
        return _throttled(request, wait)

    vendor = None
    for client_id, secret in candidates:
        cfg = config.vendors.get(client_id)
        # SECURITY: constant-time comparison; a vendor without a (non-empty) client_secret has
        # no grant, so an empty secret never matches an empty setting.
        if (
            cfg is not None
            and cfg.client_secret
            and secret
            and hmac.compare_digest(cfg.client_secret.encode(), secret.encode())
        ):
            vendor = cfg
            break
    if vendor is None:
        wait = await limits.failure(buckets)
        if wait > 0:
            return _throttled(request, wait)
        request[EXCHANGE].error = "invalid_client"
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    request[EXCHANGE].vendor = vendor.name

    grant = form.get("grant_type")
    if not grant:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    if grant != "client_credentials":
        return _oauth_error(
            400, "unsupported_grant_type", "only grant_type=client_credentials is supported"
        )
    granted = frozenset(SCOPES)
    requested = form.get("scope", "").split()
    if requested:
        names = [parse_scope(s) for s in requested]
        if any(n is None for n in names):
            bad = next(s for s, n in zip(requested, names, strict=True) if n is None)
            return _oauth_error(400, "invalid_scope", f"unknown scope {bad!r}")
        granted = frozenset(n for n in names if n is not None)
    if not config.server.jwt_keys:
        return _oauth_error(400, "unsupported_grant_type", "this proxy issues no JWTs")
    await _after_cut(services.authenticator, vendor.name)
    ttl = config.server.jwt_ttl
    access_token = encode_jwt(vendor.name, granted, config.server.jwt_keys[0], ttl=ttl)
    response = web.json_response(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": int(ttl),
            "scope": " ".join(sorted(granted)),
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response
