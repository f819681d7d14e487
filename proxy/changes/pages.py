"""Paging one collection of a district, as the gateway would forward a vendor's GETs.

docs/http-api.md "Change feed". Each page is one signed GET through the gateway's own
upstream policy (``proxy.gateway.upstream``: signing, retries, circuit, the district's
``rate_limit``) while holding one of the district's ``max_connections`` slots, so a walk goes
at the district's pace and never past its limits. The next page is on its way while the
walk hashes the ones before (``proxy.changes.diff``); nothing else of the answers is kept.

While the district's slots are all taken by vendors (or its rate or circuit says wait), a
page waits its turn, up to ``BUSY_WAIT`` in all. A walk that cannot see the whole collection
stops with ``Incomplete``: an error or a non-200 answer, a page that is not a OneRoster list,
``X-Total-Count`` changing between pages, or an empty page before the count says the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from proxy.errors import ProxyError, ServiceUnavailable, StoreUnavailable
from proxy.gateway import forward
from proxy.gateway.context import Services
from proxy.gateway.runtime import Connection
from proxy.gateway.upstream import Upstream
from proxy.scopes import classify

#: The rostering collections a walk covers, in the order it walks them.
COLLECTIONS: tuple[str, ...] = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "enrollments",
    "demographics",
)
#: Records asked for per page.
PAGE_SIZE = 1000
#: How long in all a walk waits for a busy district's slots, rate or circuit before it gives up.
BUSY_WAIT = 600.0


class Incomplete(Exception):
    """The walk could not see the whole collection; ``str()`` says why."""


def collection_path(version: str, collection: str) -> str:
    """The path after ``/ims/oneroster/`` of a collection in ``version``."""
    return f"v1p1/{collection}" if version == "v1p1" else f"rostering/v1p2/{collection}"


def version_of(conn: Connection) -> str:
    """The version a walk reads: 1.2 where the district serves it."""
    return "v1p2" if "v1p2" in conn.district.versions else "v1p1"


def needs(collection: str) -> frozenset[str]:
    """The scopes of which one lets a vendor read ``collection`` (and its changes)."""
    return classify(collection_path("v1p2", collection), "GET").scopes


def allowed(scopes: frozenset[str]) -> list[str]:
    """The collections ``scopes`` let a vendor read, in walking order."""
    return [c for c in COLLECTIONS if needs(c) & scopes]


Page = list[dict[str, Any]]


async def pages(
    services: Services,
    conn: Connection,
    collection: str,
    *,
    page_size: int = PAGE_SIZE,
    on_total: Callable[[int | None], None] | None = None,
) -> AsyncIterator[Page]:
    """Each page of ``collection`` in the district's order; ``Incomplete`` if the walk cannot
    see all of it."""
    fetcher = _Fetcher(services, conn, collection_path(version_of(conn), collection), collection)
    offset = 0
    total: int | None = None
    next_page: asyncio.Task[tuple[Page, int | None, bool]] | None = None
    try:
        next_page = asyncio.get_running_loop().create_task(fetcher.get(offset, page_size))
        while next_page is not None:
            records, count, linked = await next_page
            next_page = None
            if total is None:
                total = count
                if on_total is not None:
                    on_total(total)
            elif count is not None and count != total:
                raise Incomplete(
                    f"{collection}: X-Total-Count changed from {total} to {count} during the walk"
                )
            offset += len(records)
            if total is not None:
                more = offset < total
                if not records and more:
                    raise Incomplete(
                        f"{collection}: an empty page at offset {offset} of {total} records"
                    )
            else:
                more = bool(records) and (linked or len(records) >= page_size)
            if more:
                # The next page is on its way while this one is hashed and staged.
                next_page = asyncio.get_running_loop().create_task(fetcher.get(offset, page_size))
            yield records
    finally:
        if next_page is not None:
            next_page.cancel()
            # Its own failure no longer matters: the walk already stopped for another reason.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await next_page


class _Fetcher:
    def __init__(self, services: Services, conn: Connection, path: str, collection: str) -> None:
        self.services = services
        self.conn = conn
        self.path = path
        self.collection = collection
        self.upstream = Upstream(services)

    async def get(self, offset: int, limit: int) -> tuple[Page, int | None, bool]:
        """One page: its records, ``X-Total-Count`` and whether a ``Link`` names a next."""
        services, conn = self.services, self.conn
        query = f"limit={limit}&offset={offset}"
        out = forward.Outgoing(
            "GET",
            f"{conn.upstream_prefix}{self.path}?{query}",
            [("Accept", "application/json"), ("X-Request-Id", f"walk-{uuid.uuid4().hex[:16]}")],
            None,
        )
        timeout = services.runtime.current.config.server.upstream_timeout
        waited = 0.0
        while True:
            try:
                async with services.limits.district(conn.district):
                    response = await self.upstream.send(conn, out, None, timeout)
                    try:
                        with forward.UPSTREAM_ERRORS:
                            body = await response.read()
                    finally:
                        response.release()
                break
            except ServiceUnavailable as exc:
                # The district's slots, rate or circuit said "not now" (vendors come first):
                # a walk waits its turn rather than fail, up to BUSY_WAIT in all.
                pause = max(1.0, exc.retry_after or 1.0)
                if isinstance(exc, StoreUnavailable) or waited + pause > BUSY_WAIT:
                    raise Incomplete(f"GET {self.path}?{query}: {exc.description}") from exc
                waited += pause
                await asyncio.sleep(pause)
            except ProxyError as exc:
                raise Incomplete(f"GET {self.path}?{query}: {exc.description}") from exc
        if response.status != 200:
            raise Incomplete(f"GET {self.path}?{query} answered {response.status}")
        try:
            records = json.loads(body)[self.collection]
        except (ValueError, KeyError, TypeError) as exc:
            raise Incomplete(f"GET {self.path}?{query}: not a list of {self.collection}") from exc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise Incomplete(f"GET {self.path}?{query}: not a list of {self.collection}")
        count = response.headers.get("X-Total-Count")
        total = int(count) if count is not None and count.strip().isdigit() else None
        linked = 'rel="next"' in response.headers.get("Link", "")
        return records, total, linked
