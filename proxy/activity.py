"""The last hour's traffic of each connection, for the console's board (docs/http-api.md).

Prometheus counts requests by vendor and district; the board wants them per appId and over
the last hour, which a counter of the process can answer without a Prometheus server: sixty
one-minute slots per appId, reused as the clock moves on. The gateway calls ``record`` once
per finished request (a dictionary look-up and two additions); appIds come only from
connections the runtime knows, so the table is bounded by the config and the store.

Three counts per minute (docs/http-api.md, the board's last hour): requests; refused, the
district's own 401 and 403 (its credentials or its "Data to Share" refused the request: the
connection needs the district's attention); errors, answers of 500 or more (the district
failing, or the proxy failing on its behalf: 502/503/504). The proxy's own 4xx to a vendor
(unknown record, scope refused, bad token) is neither: the connection is not failing.
With ``serve --workers N`` each worker counts its own requests, and the supervisor's console
adds up every worker's ``GET /admin/activity`` (``merge``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

MINUTES = 60
_MAX_APPS = 100_000
#: One minute of one appId: (requests, refused by the district, errors).
Minute = tuple[int, int, int]
QUIET: Minute = (0, 0, 0)


class Activity:
    """Requests, district refusals and errors per appId per minute, for the last hour."""

    __slots__ = ("_apps", "_clock")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # appId -> one [minute, requests, refused, errors] slot per minute of the hour
        self._apps: dict[str, list[list[int]]] = {}

    def record(self, app_id: str, status: int, upstream_status: int | None = None) -> None:
        """One finished request; ``upstream_status`` is the district's status when the answer
        is the district's (None when the proxy answered itself)."""
        if app_id == "-":
            return
        minute = int(self._clock() // 60)
        slots = self._apps.get(app_id)
        if slots is None:
            if len(self._apps) >= _MAX_APPS:
                return
            slots = self._apps[app_id] = [[-1, 0, 0, 0] for _ in range(MINUTES)]
        slot = slots[minute % MINUTES]
        if slot[0] != minute:
            slot[0], slot[1], slot[2], slot[3] = minute, 0, 0, 0
        slot[1] += 1
        if status >= 500:
            slot[3] += 1
        elif upstream_status == status and (status == 401 or status == 403):
            slot[2] += 1

    def last_hour(self, app_id: str) -> list[Minute]:
        """(requests, refused, errors) per minute, oldest first, the current minute last."""
        now = int(self._clock() // 60)
        slots = self._apps.get(app_id)
        out: list[Minute] = []
        for minute in range(now - MINUTES + 1, now + 1):
            slot = slots[minute % MINUTES] if slots is not None else None
            fresh = slot is not None and slot[0] == minute
            out.append((slot[1], slot[2], slot[3]) if slot is not None and fresh else QUIET)
        return out

    def snapshot(self) -> dict[str, list[Minute]]:
        """``last_hour`` of every appId that had a request within the hour."""
        out = {}
        for app_id in list(self._apps):
            minutes = self.last_hour(app_id)
            if any(m[0] for m in minutes):
                out[app_id] = minutes
        return out


def minutes_of(raw: object) -> list[Minute]:
    """One appId's minutes as another process sent them (JSON lists); ``ValueError`` or
    ``TypeError`` if they are not that shape."""
    if not isinstance(raw, list):
        raise TypeError("minutes must be a list")
    return [(int(m[0]), int(m[1]), int(m[2])) for m in raw]


def merge(parts: list[dict[str, list[Minute]]]) -> dict[str, list[Minute]]:
    """Minute-by-minute sums of several processes' snapshots (taken within the same minute)."""
    total: dict[str, list[Minute]] = {}
    for part in parts:
        for app_id, minutes in part.items():
            mine = total.setdefault(app_id, [QUIET] * MINUTES)
            total[app_id] = [
                (a[0] + b[0], a[1] + b[1], a[2] + b[2]) for a, b in zip(mine, minutes, strict=False)
            ]
    return total
