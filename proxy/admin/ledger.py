"""``GET /admin/ledger?app=&vendor=&since=``: the access ledger (docs/http-api.md), the twin of
``oneroster-proxy ledger``: what each vendor received, per connection, UTC day and collection,
as counts and field names. This process's counts are written first, so the answer includes
the requests it just served."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from proxy.errors import BadRequest
from proxy.gateway.context import SERVICES
from proxy.sharing.ledger import parse_since

#: The query parameters the route reads; any other is a 400 naming it.
_PARAMS = frozenset({"app", "vendor", "since"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/ledger", ledger)


async def ledger(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    query = request.query
    for name in query:
        if name not in _PARAMS:
            raise BadRequest(f"unknown query parameter {name!r} (app, vendor, since)")
    since = None
    if query.get("since"):
        try:
            since = parse_since(query["since"], datetime.now(UTC).date())
        except ValueError as exc:
            raise BadRequest(f"since: {exc}") from None
    store = services.store
    await services.ledger.flush(store, services.runtime.current.config.store.ledger_days)
    rows = await store.list_ledger(
        app=query.get("app") or None, vendor=query.get("vendor") or None, since=since
    )
    return web.json_response([row.as_json() for row in rows])
