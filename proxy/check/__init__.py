"""The troubleshooting checklist: ``check APP_ID``, ``check --all``, the admin ``check``.

``report`` (items, reports, their text), ``probes`` (the signed GETs of the district),
``config_items`` (the items judged from the config alone), ``items`` (the checklist and its
live items); ``run_check`` and ``check_all`` here; printing is ``proxy.cli.check``'s.

docs/checklist.md. Every item is judged live against the
district and read-only: the only requests are GETs with ``limit=1`` (plus the OAuth2 token
request), signed exactly as the gateway signs them, through the connection's own
``proxy.gateway.runtime.Connection`` (OAuth1 signer or OAuth2 token source,
``x-vendor-authorization`` on gradebook endpoints). Each probe is bounded by ``[server]
upstream_timeout``, and the probes
that do not depend on each other run concurrently, so a hanging district costs one timeout.

The items, in the documented order, and what each one needs before it can be judged:

    connection_enabled, not_expired, infinite_campus_key    the config alone
    district_reachable      an unsigned GET of the rostering orgs collection gets any answer
    token_endpoint          (oauth2) a token for key/secret; ``skip`` for oauth1
    credentials_accepted    a signed GET ``orgs?limit=1`` is not 401   (needs the two above)
    data_shared             each granted read scope's cheapest endpoint answers 200 (needs
                            credentials); a read scope outside ``scopes`` that answers 200 is
                            a warning, not a failure: the gateway refuses those paths anyway
    students_visible        ``students?limit=1`` holds a student       (needs credentials)
    vendor_authorization    a gradebook GET with the vendor header is not 401 (needs credentials)

An item that cannot be judged because an earlier one failed is ``skip``; a warning (expiry
within 30 days, a district sharing more than ``scopes``) is ``ok`` with the warning in its
detail. Details never hold a key, secret or
token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from proxy.check.items import Checklist
from proxy.check.report import CHECKS, HINTS, Item, Report, format_report, summary_lines
from proxy.config import Config
from proxy.errors import NotFound
from proxy.gateway import forward
from proxy.store.base import ChangeStore

#: ``check --all`` checks this many connections at once, so a large config does not open
#: hundreds of district connections in one burst.
CHECK_ALL_CONCURRENCY = 8


async def run_check(
    config: Config,
    app_id: str,
    *,
    session: aiohttp.ClientSession | None = None,
    now: datetime | None = None,
    store: ChangeStore | None = None,
) -> Report:
    """Run every checklist item for connection ``app_id`` live against its district.

    ``session`` is an upstream client session to use (the gateway's, from the admin API); one
    is opened and closed here if none is given. ``NotFound`` for an unknown ``app_id``.
    """
    conn_cfg = config.connections.get(app_id)
    if conn_cfg is None:
        raise NotFound(f"unknown application {app_id!r}")
    own = session is None
    client = forward.new_session() if session is None else session
    try:
        return await Checklist(
            config, conn_cfg, client, now or datetime.now(UTC), store=store
        ).run()
    finally:
        if own:
            await client.close()


async def check_all(
    config: Config,
    *,
    concurrency: int = CHECK_ALL_CONCURRENCY,
    on_report: Callable[[Report], None] | None = None,
    now: datetime | None = None,
) -> list[Report]:
    """Every connection, at most ``concurrency`` at once; reports in config order."""
    limit = asyncio.Semaphore(max(1, concurrency))
    session = forward.new_session()

    async def one(app_id: str) -> Report:
        async with limit:
            report = await run_check(config, app_id, session=session, now=now)
        if on_report is not None:
            on_report(report)
        return report

    try:
        return list(await asyncio.gather(*(one(a) for a in config.connections)))
    finally:
        await session.close()


__all__ = [
    "CHECKS",
    "CHECK_ALL_CONCURRENCY",
    "HINTS",
    "Item",
    "Report",
    "check_all",
    "format_report",
    "run_check",
    "summary_lines",
]
