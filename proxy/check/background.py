"""Background checks: the ``check`` checklist for every connection on a schedule.

docs/checklist.md: ``[server] check_interval`` (``0s``, the default, is off) runs the
checklist of every connection on that schedule, one replica at a time (a lock in the store), at
most 8 connections at once, and keeps the last 20 results per connection in the store. The
``check_ok`` / ``check_timestamp_seconds`` gauges and ``last_check`` of ``GET
/admin/connections/{appId}`` are read back from the store, so every replica shows the same
answer whichever replica ran the round.

Every process (each ``--workers`` worker, each replica) runs the loop; the lock makes them take
turns, and a connection is checked only when its newest stored result is older than the
interval, so a round another replica just finished is not repeated. The loop rereads the
interval on every turn, so a reload switches checks on, off or to another pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiohttp import web

from proxy.check.catalog import Listed, every_connection, run_and_keep_check
from proxy.check.report import Item, Report
from proxy.config import DistrictConfig, expiry_end
from proxy.connections.records import district_config
from proxy.courtesy import paused
from proxy.errors import CredentialsUnusable, ProxyError
from proxy.gateway.context import SERVICES, Services
from proxy.store.base import CheckResult
from proxy.store.lock import held
from proxy.tasks import kept_running

log = logging.getLogger("oneroster_proxy.checks")

LOCK_KEY = "background-checks"
#: At most this many connections are checked at once (docs/checklist.md: 8).
AT_ONCE = 8
#: The lock outlives a crashed holder by this much; a live holder renews it well before.
LOCK_TTL = 60.0
#: Longest sleep between looks at the schedule: a reload that turns checks on, or a round
#: another replica left unfinished, is noticed within this.
MAX_NAP = 30.0


class BackgroundChecks:
    """The loop of one process; ``round()`` is one turn, callable directly from tests."""

    def __init__(
        self, services: Services, *, holder: str | None = None, interval: float | None = None
    ) -> None:
        self.services = services
        self.holder = holder or f"checks-{secrets.token_hex(8)}"
        self._interval = interval  # None: the config's, reread every turn

    @property
    def interval(self) -> float:
        if self._interval is not None:
            return self._interval
        return self.services.runtime.current.config.server.check_interval

    async def run_forever(self) -> None:
        while True:
            interval = self.interval
            if interval > 0:
                try:
                    await self.round()
                except ProxyError as exc:  # the store is down: try again next turn
                    log.warning("background checks skipped: %s", exc.description)
                except Exception:  # never the end of the loop: logged now, tried next turn
                    log.exception("background check round failed")
            await asyncio.sleep(min(interval, MAX_NAP) if interval > 0 else MAX_NAP)

    async def round(self, *, now: datetime | None = None) -> list[str] | None:
        """Check every connection that is due; the appIds checked, or None if another
        process holds the lock."""
        async with held(self.services.store, LOCK_KEY, self.holder, LOCK_TTL) as mine:
            if not mine:
                return None
            broken: dict[str, Exception] = {}
            due = await self.due(now or datetime.now(UTC), broken)
            limit = asyncio.Semaphore(AT_ONCE)
            done = list(await asyncio.gather(*(self._one(listed, limit) for listed in due)))
            for app_id, exc in sorted(broken.items()):
                await self._unusable(app_id, exc)
            return done + sorted(broken)

    async def due(self, now: datetime, broken: dict[str, Exception] | None = None) -> list[Listed]:
        """Connections (TOML and store) whose newest result is older than the interval, or
        that have none; store records that cannot be used go into ``broken``."""
        found: dict[str, Exception] = {}
        every = await every_connection(self.services, found)
        last = await self.services.store.last_check_results([*(c.app_id for c in every), *found])
        # A little slack: a round that started a moment early still covers this turn.
        horizon = now - timedelta(seconds=self.interval * 0.95)

        def is_due(app_id: str) -> bool:
            return app_id not in last or last[app_id][0].at <= horizon

        if broken is not None:
            broken.update({a: why for a, why in found.items() if is_due(a)})
        return [c for c in every if is_due(c.app_id)]

    async def _unusable(self, app_id: str, exc: Exception) -> None:
        """A stored connection that cannot even be built (its secret does not open because its
        record was changed outside the proxy, or a stored value no longer validates) fails its
        own check, kept like any other result, so the board and ``check_ok`` show it; nothing
        is sent for it, and every other connection is checked as usual."""
        why = exc.description if isinstance(exc, ProxyError) else str(exc) or type(exc).__name__
        if isinstance(exc, CredentialsUnusable):
            item = Item("credentials_accepted", "fail", why)
        else:
            item = Item(
                "district_reachable", "fail", f"the stored connection cannot be used: {why}"
            )
        report = Report(app_id, False, [item])
        with contextlib.suppress(ProxyError):
            await self.services.store.add_check_result(
                CheckResult(app_id=app_id, at=datetime.now(UTC), document=report.as_json())
            )
        _log_failed(report)

    async def _one(self, listed: Listed, limit: asyncio.Semaphore) -> str:
        app_id = listed.app_id
        async with limit:
            try:
                report = await run_and_keep_check(self.services, listed.connection)
            except Exception as exc:
                log.exception("background check of %s failed", app_id)
                await self._unusable(app_id, exc)
                return app_id
        if not report.ok:
            _log_failed(report)
        return app_id


def _log_failed(report: Report) -> None:
    log.warning(
        "background check failed",
        extra={
            "fields": {
                "event": "check.failed",
                "app": report.app,
                "failing": [i.name for i in report.failed],
            }
        },
    )


async def background_checks(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` of the gateway app: the loop runs while the app does."""
    async with kept_running(BackgroundChecks(app[SERVICES]).run_forever()):
        yield


async def refresh_check_gauges(services: Services) -> None:
    """``check_ok``, ``check_timestamp_seconds`` and ``check_failed_twice`` from the store, at
    scrape time: the same on every replica, and gone for a removed connection; and
    ``district_paused`` of every district."""
    await _set_paused(services)
    districts = {a: c.district.name for a, c in services.runtime.current.connections.items()}
    file_apps = set(districts)
    # Store connections' expiry series too (the alert on expiring connections covers them).
    ends: dict[tuple[str, str], float] = {}
    try:
        after = ""
        while True:
            page = await services.store.list_connections(after=after, limit=500)
            for record in page:
                districts.setdefault(record.app_id, record.district)
                if record.expires is not None and record.app_id not in file_apps:
                    ends[(record.app_id, record.district)] = expiry_end(record.expires).timestamp()
            if len(page) < 500:
                break
            after = page[-1].app_id
        last = await services.store.last_check_results(sorted(districts))
    except ProxyError:
        return
    metrics = services.metrics
    metrics.set_store_expiry(ends)
    for gauge in (metrics.check_ok, metrics.check_timestamp, metrics.check_failed_twice):
        metrics.forget(gauge)
    for app_id, results in last.items():
        labels = (app_id, districts[app_id])
        newest = results[0]
        metrics.check_ok.labels(*labels).set(1 if newest.ok else 0)
        metrics.check_timestamp.labels(*labels).set(newest.at.timestamp())
        twice = len(results) >= 2 and not results[0].ok and not results[1].ok
        metrics.check_failed_twice.labels(*labels).set(1 if twice else 0)


async def _set_paused(services: Services) -> None:
    """``district_paused`` of every district, the file's and the store's (docs/metrics.md)."""
    now = datetime.fromtimestamp(services.limits.wall(), UTC)
    districts: dict[str, DistrictConfig] = dict(services.runtime.current.config.districts)
    try:
        for record in await services.store.list_districts():
            districts.setdefault(record.name, district_config(record))
    except ProxyError:
        pass
    services.metrics.set_paused({n: paused(d, now) is not None for n, d in districts.items()})
