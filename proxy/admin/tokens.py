"""The admin API for vendor tokens (docs/http-api.md): the twins of ``tokens list | issue | rotate |
revoke``.

``GET|POST /admin/vendors/{vendor}/tokens``, ``POST /admin/vendors/{vendor}/tokens/rotate``
(``{"grace": D, "ttl"?: D}``; 400 without ``grace``), ``DELETE /admin/vendors/{vendor}/tokens``
(every token of the vendor and every JWT issued to it so far, as ``tokens revoke --all``) and
``DELETE /admin/tokens/{id}`` (an id or a listed prefix). A change applies in this process at
once and on every other replica within ``[store] cache_ttl``. No secret is returned except a
newly issued token, once.
"""

from __future__ import annotations

from aiohttp import web

from proxy import tokens
from proxy.admin.body import duration_field, json_object, only_fields
from proxy.errors import BadRequest, NotFound
from proxy.gateway.context import SERVICES, Services


def add_routes(app: web.Application) -> None:
    """Register the token routes on the admin app (it holds the gateway's ``SERVICES``)."""
    app.router.add_get("/admin/vendors/{vendor}/tokens", list_tokens)
    app.router.add_post("/admin/vendors/{vendor}/tokens", issue_token)
    app.router.add_post("/admin/vendors/{vendor}/tokens/rotate", rotate_tokens)
    app.router.add_delete("/admin/vendors/{vendor}/tokens", revoke_vendor_tokens)
    app.router.add_delete("/admin/tokens/{token_id}", revoke_token)


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def _vendor(request: web.Request) -> str:
    vendor = request.match_info["vendor"]
    if vendor not in _services(request).runtime.current.config.vendors:
        raise NotFound(f"unknown vendor {vendor!r}")
    return vendor


async def list_tokens(request: web.Request) -> web.Response:
    services = _services(request)
    records = await services.store.list_tokens(_vendor(request))
    return web.json_response([tokens.listing(r) for r in records])


async def issue_token(request: web.Request) -> web.Response:
    services = _services(request)
    vendor = _vendor(request)
    body = await json_object(request)
    only_fields(body, "ttl")
    issued = await tokens.issue(
        services.store, vendor, ttl=duration_field(body, "ttl"), interface="admin"
    )
    return web.json_response({**tokens.listing(issued.record), "token": issued.token}, status=201)


async def rotate_tokens(request: web.Request) -> web.Response:
    services = _services(request)
    vendor = _vendor(request)
    body = await json_object(request)
    only_fields(body, "grace", "ttl")
    grace = duration_field(body, "grace")
    if grace is None:
        # As the CLI's required --grace: ending every older token at once must be asked for.
        raise BadRequest('grace: required, e.g. {"grace": "1h"}; "0s" ends older tokens at once')
    ttl = duration_field(body, "ttl") if "ttl" in body else tokens.INHERIT
    issued, ending = await tokens.rotate(
        services.store, vendor, grace=grace, ttl=ttl, interface="admin"
    )
    # This process sees the new expiry (and a "0s" JWT cut) at once; other replicas within
    # cache_ttl.
    for token_id in ending:
        services.authenticator.forget(token_id)
    services.authenticator.forget_cutoff(vendor)
    return web.json_response(
        {**tokens.listing(issued.record), "token": issued.token, "ending": ending}, status=201
    )


async def revoke_vendor_tokens(request: web.Request) -> web.Response:
    services = _services(request)
    vendor = _vendor(request)
    ids = await tokens.revoke_all(services.store, vendor, interface="admin")
    for token_id in ids:
        services.authenticator.forget(token_id)
    services.authenticator.forget_cutoff(vendor)
    return web.json_response({"vendor": vendor, "revoked": ids})


async def revoke_token(request: web.Request) -> web.Response:
    services = _services(request)
    ref = request.match_info["token_id"]
    if tokens.parse_token(ref) is not None:
        # SECURITY: a whole token in a URL lands in logs on the way; ask for its id.
        raise BadRequest("give the token's id or listed prefix, not the token")
    try:
        found = await tokens.resolve(services.store, ref)
    except tokens.AmbiguousTokenReference as exc:
        raise BadRequest(str(exc)) from exc
    except tokens.TokenReferenceError as exc:
        raise NotFound("unknown token id") from exc
    token_id = found.id
    record = await tokens.revoke(services.store, token_id, interface="admin")
    if record is None:
        raise NotFound("unknown token id")
    services.authenticator.forget(token_id)
    fresh = await services.store.get_token(token_id)
    return web.json_response(tokens.listing(fresh or record))
