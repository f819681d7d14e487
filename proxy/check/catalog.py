"""Every connection, TOML and store alike, for the pages and loops that list or check them all
(docs/http-api.md: one row per connection; "Background checks": every connection).

The gateway never lists connections: it looks one appId up (``proxy.gateway.resolve``). The console,
the background checks and the admin check do, so this module pages through the store's
connections and builds each one through the same ``StoreConnections`` the gateway uses (same
cache, same sealed-secret handling), and runs the checklist on a store connection by handing
``check`` a one-connection config, exactly as it gets a TOML one.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

from proxy.check import Report, run_check
from proxy.errors import ProxyError, StoreUnavailable
from proxy.gateway.context import Services
from proxy.gateway.runtime import Connection
from proxy.store.base import CheckResult

log = logging.getLogger("oneroster_proxy.check")
PAGE = 500


@dataclasses.dataclass(frozen=True, slots=True)
class Listed:
    connection: Connection
    source: str  # "config" or "store"

    @property
    def app_id(self) -> str:
        return self.connection.app_id


async def every_connection(
    services: Services, broken: dict[str, Exception] | None = None
) -> list[Listed]:
    """TOML connections, then store ones, by appId; a store record that cannot be built (its
    vendor or district gone) is left out, as the gateway would answer 404 for it. A record
    that fails to load (its secret unreadable, a stored value that no longer validates) is
    left out too, and named in ``broken`` (appId -> what was raised) when given: one such record
    never stops the listing of the others."""
    runtime = services.runtime.current
    out = [Listed(runtime.connections[a], "config") for a in sorted(runtime.connections)]
    after = ""
    while True:
        page = await services.store.list_connections(after=after, limit=PAGE)
        for record in page:
            if record.app_id in runtime.connections:
                continue
            try:
                conn = await services.store_connections.get(record.app_id, runtime)
            except StoreUnavailable:
                raise  # the whole store is down, not this record
            except Exception as exc:
                why = exc.description if isinstance(exc, ProxyError) else str(exc)
                log.warning(
                    "store connection cannot be used",
                    extra={"fields": {"event": "check.broken", "app": record.app_id, "why": why}},
                )
                if broken is not None:
                    broken[record.app_id] = exc
                continue
            if conn is not None:
                out.append(Listed(conn, "store"))
        if len(page) < PAGE:
            break
        after = page[-1].app_id
    return out


async def find_connection(services: Services, app_id: str) -> Listed | None:
    runtime = services.runtime.current
    conn = runtime.connections.get(app_id)
    if conn is not None:
        return Listed(conn, "config")
    conn = await services.store_connections.get(app_id, runtime)
    return None if conn is None else Listed(conn, "store")


async def run_and_keep_check(services: Services, conn: Connection, *, keep: bool = True) -> Report:
    """The checklist of ``conn``, live; kept in the store's history unless ``keep`` is off."""
    config = services.runtime.current.config
    single = dataclasses.replace(
        config,
        districts={**config.districts, conn.district.name: conn.district},
        connections={conn.app_id: conn.config},
    )
    report = await run_check(single, conn.app_id, session=services.session, store=services.store)
    if keep:
        await services.store.add_check_result(
            CheckResult(app_id=conn.app_id, at=datetime.now(UTC), document=report.as_json())
        )
    return report
