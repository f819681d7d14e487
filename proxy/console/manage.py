"""Changes the console makes to store connections: enable, disable, renew credentials (SPEC.md
"Connections in the store": only ``store`` connections change at run time)."""

from __future__ import annotations

from ..context import Services
from ..errors import Conflict
from ..runtime import Connection


def _store_only(conn: Connection) -> None:
    source = getattr(conn, "source", None) or getattr(conn.config, "source", "config")
    if source != "store":
        raise Conflict(f"{conn.app_id} is defined in the config file; change it there and reload")


async def set_enabled(services: Services, conn: Connection, enabled: bool) -> None:
    _store_only(conn)


async def renew(
    services: Services, conn: Connection, *, key: str, secret: str, expires: str
) -> None:
    _store_only(conn)
