"""The console's "Data shared" pages: a printable receipt of what a vendor received from a
district, per connection or per vendor, from the access ledger (docs/http-api.md
``GET /admin/ledger``), and the form that sets a store connection's sharing policy
(docs/configuration.md "Sharing policy")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from proxy.console.manage import set_drop_fields
from proxy.console.views import _connection, connection, console_of
from proxy.errors import BadRequest, NotFound
from proxy.sharing.ledger import parse_since
from proxy.store.base import LedgerRow


@dataclass
class _Collection:
    name: str
    records: int = 0
    requests: int = 0
    bytes: int = 0
    first: date | None = None
    last: date | None = None
    fields: set[str] = field(default_factory=set)


def receipt(rows: list[LedgerRow]) -> list[dict[str, Any]]:
    """Per vendor and district: what went out, per collection, with the field names."""
    parts: dict[tuple[str, str], dict[str, _Collection]] = {}
    apps: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        pair = (row.vendor, row.district)
        apps.setdefault(pair, set()).add(row.app)
        c = parts.setdefault(pair, {}).setdefault(row.collection, _Collection(row.collection))
        c.records += row.records
        c.requests += row.requests
        c.bytes += row.bytes
        c.first = row.day if c.first is None else min(c.first, row.day)
        c.last = row.day if c.last is None else max(c.last, row.day)
        c.fields.update(row.fields)
    out = []
    for (vendor, district), collections in sorted(parts.items()):
        listed = sorted(collections.values(), key=lambda c: c.name)
        out.append(
            {
                "vendor": vendor,
                "district": district,
                "apps": sorted(apps[(vendor, district)]),
                "first": min(c.first for c in listed if c.first is not None).isoformat(),
                "last": max(c.last for c in listed if c.last is not None).isoformat(),
                "records": sum(c.records for c in listed),
                "collections": [
                    {
                        "name": c.name,
                        "records": c.records,
                        "requests": c.requests,
                        "bytes": c.bytes,
                        "first": c.first.isoformat() if c.first else "",
                        "last": c.last.isoformat() if c.last else "",
                        "fields": sorted(c.fields),
                    }
                    for c in listed
                ],
            }
        )
    return out


async def _page(
    request: web.Request, subject: str, *, app: str | None, vendor: str | None
) -> web.Response:
    console = console_of(request)
    services = console.services
    today = datetime.now(UTC).date()
    since_text = request.query.get("since", "30d")
    try:
        since = parse_since(since_text, today)
    except ValueError as exc:
        raise BadRequest(f"since: {exc}") from None
    await services.ledger.flush(services.store, services.runtime.current.config.store.ledger_days)
    rows = await services.store.list_ledger(app=app, vendor=vendor, since=since)
    return console.render(
        request,
        "shared.html",
        subject=subject,
        since=since.isoformat(),
        since_text=since_text,
        today=today.isoformat(),
        receipts=receipt(rows),
        rows=[r.as_json() for r in rows],
    )


async def connection_shared(request: web.Request) -> web.StreamResponse:
    listed = await _connection(request)
    return await _page(request, f"connection {listed.app_id}", app=listed.app_id, vendor=None)


async def vendor_shared(request: web.Request) -> web.StreamResponse:
    vendor = request.match_info["vendor"]
    if vendor not in console_of(request).services.runtime.current.config.vendors:
        raise NotFound("There is no vendor with that name.")
    return await _page(request, f"vendor {vendor}", app=None, vendor=vendor)


async def set_policy(request: web.Request) -> web.StreamResponse:
    """The connection page's sharing-policy form: comma-separated entries; empty for none."""
    listed = await _connection(request)
    form = await request.post()
    text = str(form.get("drop_fields", ""))
    entries = [e.strip() for e in text.split(",") if e.strip()]
    await set_drop_fields(console_of(request).services, listed.app_id, entries)
    return await connection(
        request, notices=[{"kind": "ok", "text": "Sharing policy saved; in use now."}]
    )
