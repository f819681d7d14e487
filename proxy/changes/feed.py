"""``GET /<appId>/changes``: the change feed, for vendors (docs/http-api.md "Change feed").

The vendor's token, its connection (the same 404 as the gateway's for another vendor's appId,
403 while disabled or expired) and its scopes per collection: a ``users`` change is shown only
to a connection (and a JWT) that may read ``users``. Changes come oldest first, at most
``limit`` (default 100, at most 1000) read from the store per request; ``cursor`` is where the
next request starts, and ``Link: <...>; rel="next"`` is sent while newer changes remain.
Cursors are opaque; one older than the changes kept (``[store] changes_days``) is 410: the
vendor does a full sync and starts again without ``since``.
"""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from proxy.changes.pages import COLLECTIONS, needs
from proxy.errors import BadRequest, Gone
from proxy.gateway.context import EXCHANGE, SERVICES
from proxy.gateway.handler import owned_connection
from proxy.gateway.rewrite import public_base
from proxy.store.base import ChangeRecord

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_PREFIX = "orc1:"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    """The seq a cursor stands for; BadRequest for anything this proxy did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    digits = raw[len(_PREFIX) :]
    if not raw.startswith(_PREFIX) or not digits.isdigit() or len(digits) > 18:
        raise BadRequest("since: not a cursor of this change feed")
    return int(digits)


def parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"limit: must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def change_json(change: ChangeRecord) -> dict[str, str]:
    return {
        "collection": change.collection,
        "sourcedId": change.sourced_id,
        "change": change.change,
        "at": change.at.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


async def handle(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    runtime = services.runtime.current
    config = runtime.config
    ex = request[EXCHANGE]
    principal = await services.authenticator.authenticate(
        request.headers.get("Authorization"), config.vendors, config.server.jwt_keys
    )
    ex.vendor = principal.vendor
    ex.token_id = principal.token_id
    vendor = config.vendors[principal.vendor]
    if vendor.rate_limit is not None:
        await services.limits.vendor(vendor)
    app_id = request.match_info["app_id"]
    ex.app_id = app_id
    ex.resource = "changes"
    found = runtime.connections.get(app_id) or await services.store_connections.get(app_id, runtime)
    conn = owned_connection(found, principal, ex)
    scopes = (
        conn.config.scopes if principal.scopes is None else conn.config.scopes & principal.scopes
    )
    visible = {c for c in COLLECTIONS if needs(c) & scopes}
    limit = parse_limit(request.query.get("limit"))
    since = request.query.get("since")
    store = services.store
    floor, newest = await store.changes_bounds(app_id)
    if since is None:
        after = floor
    else:
        after = decode_cursor(since)
        if after < floor:
            raise Gone(
                "this cursor is older than the changes kept: do a full sync, then read the "
                "feed again without since"
            )
    read = await store.read_changes(app_id, after, limit)
    last = read[-1].seq if read else after
    body = {
        "changes": [change_json(c) for c in read if c.collection in visible],
        "cursor": encode_cursor(last),
    }
    response = web.json_response(body)
    if last < newest:
        server = config.server
        base = public_base(
            request.scheme,
            request.host,
            request.headers.get("X-Forwarded-Proto"),
            request.headers.get("X-Forwarded-Host"),
            trust_forwarded=server.trust_forwarded,
            public_url=server.public_url,
        )
        following = f"{base}/{app_id}/changes?since={encode_cursor(last)}&limit={limit}"
        response.headers["Link"] = f'<{following}>; rel="next"'
    return response
