"""The daily walks of the change feed, run inside the server like the background checks.

docs/http-api.md "Change feed": every connection with ``changes = true`` is walked once a day
at ``changes_at`` (the district's time of day). Every process runs this loop; a connection's
walk holds a store slot (``proxy.changes.diff``), so one process walks it while the others
pass it by, and a walk left ``running`` by a process that died is started again by the next
turn of any process. A held walk waits for an operator; a failed one is tried again after
``RETRY_FAILED``; a disabled or expired connection is not walked. Each turn also drops
changes older than ``[store] changes_days``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiohttp import web

from proxy.changes.diff import Walk
from proxy.config.model import parse_clock
from proxy.courtesy.schedule import paused, zone
from proxy.errors import Conflict, ProxyError
from proxy.gateway.context import SERVICES, Services
from proxy.gateway.runtime import Connection
from proxy.store.base import WalkRecord
from proxy.tasks import kept_running

log = logging.getLogger("oneroster_proxy.changes")

#: Store connections read at once.
PAGE = 500
#: Seconds between two looks at the schedule.
NAP = 30.0
#: A failed walk is tried again this long after it stopped.
RETRY_FAILED = timedelta(hours=1)


def last_slot(conn: Connection, now: datetime) -> datetime:
    """The newest instant at or before ``now`` at which ``conn``'s daily walk was due:
    ``changes_at`` on the district's clock (its ``timezone``)."""
    clock = parse_clock(conn.config.changes_at)
    tz = zone(conn.district.timezone)
    today = now.astimezone(tz).date()
    slot = datetime.combine(today, clock, tzinfo=tz)
    if slot > now:
        slot = datetime.combine(today - timedelta(days=1), clock, tzinfo=tz)
    return slot


def may_walk(conn: Connection, now: datetime) -> bool:
    """Whether the district lets a walk start now: not during one of its pauses (its peak-hour
    windows cap the walk's requests like any other, through the district's slots)."""
    return paused(conn.district, now) is None


def due(conn: Connection, last: WalkRecord | None, now: datetime) -> bool:
    if last is None:
        return True
    if last.state == "held":
        return False  # an operator accepts or discards it first
    if last.state == "running":
        return True  # left by a process that died; a live walk's slot refuses the second
    if last.state == "failed" and last.finished is not None:
        if now - last.finished >= RETRY_FAILED:
            return True
    return last.started < last_slot(conn, now)


async def with_feed(services: Services) -> list[Connection]:
    """Every connection with ``changes = true``, TOML and store alike. Store records are read
    a page at a time and only those with a feed are built (their secret opened), so a store
    of thousands of connections without one costs a few reads per turn."""
    runtime = services.runtime.current
    found = [c for _, c in sorted(runtime.connections.items()) if c.config.changes]
    after = ""
    while True:
        page = await services.store.list_connections(after=after, limit=PAGE)
        for record in page:
            if record.changes and record.app_id not in runtime.connections:
                conn = await services.store_connections.get(record.app_id, runtime)
                if conn is not None:
                    found.append(conn)
        if len(page) < PAGE:
            return found
        after = page[-1].app_id


class DailyWalks:
    """The loop of one process; ``turn()`` is one look, callable directly from tests."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def run_forever(self) -> None:
        while True:
            try:
                await self.turn()
            except ProxyError as exc:  # the store is down: try again next turn
                log.warning("change feed walks skipped: %s", exc.description)
            except Exception:  # never let one bad turn end the loop for the process's life
                log.exception("change feed walks failed; trying again next turn")
            await asyncio.sleep(NAP)

    async def turn(self, now: datetime | None = None) -> list[WalkRecord]:
        """Walk every connection that is due; the walks this process made."""
        services = self.services
        store = services.store
        days = services.runtime.current.config.store.changes_days

        def stamp() -> datetime:
            return now or datetime.now(UTC)

        done = []
        for conn in await with_feed(services):
            if not conn.config.enabled:
                continue
            at = stamp()
            if conn.config.expired(at):
                continue  # the district no longer serves it; what was published stays
            await store.trim_changes(conn.app_id, at - timedelta(days=days))
            if not may_walk(conn, at) or not due(conn, await store.get_walk(conn.app_id), at):
                continue
            try:
                done.append(await Walk(services, conn, now=stamp).run())
            except Conflict:
                continue  # another process walks it
        return done


async def daily_walks(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` of the gateway app: the loop runs while the app does."""
    async with kept_running(DailyWalks(app[SERVICES]).run_forever()):
        yield


async def refresh_changes_gauge(services: Services) -> None:
    """``changes_held{app}`` from the store at scrape time: the same on every replica."""
    try:
        walks = {
            c.app_id: await services.store.get_walk(c.app_id) for c in await with_feed(services)
        }
    except ProxyError:
        return
    gauge = services.metrics.changes_held
    gauge.clear()
    for app_id, walk in walks.items():
        gauge.labels(app_id).set(1 if walk is not None and walk.state == "held" else 0)
