"""The last hour's traffic of each connection, for the console's board (docs/http-api.md).

Prometheus counts requests by vendor and district; the board wants them per appId and over
the last hour, which a counter of the process can answer without a Prometheus server: sixty
one-minute slots per appId, reused as the clock moves on. The gateway calls ``record`` once
per finished request (a dictionary look-up and two additions); appIds come only from
connections the runtime knows, so the table is bounded by the config and the store.

An error is an answer of 500 or more: the district failing or the proxy failing on its behalf
(502/503/504). A vendor's 4xx (unknown record, scope refused) is not the connection failing.
With ``serve --workers N`` each worker counts its own requests, and the supervisor's console
adds up every worker's ``GET /admin/activity`` (``merge``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

MINUTES = 60
_MAX_APPS = 100_000


class Activity:
    """Requests and errors per appId per minute, for the last ``MINUTES`` minutes."""

    __slots__ = ("_apps", "_clock")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # appId -> one [minute, requests, errors] slot per minute of the hour
        self._apps: dict[str, list[list[int]]] = {}

    def record(self, app_id: str, status: int) -> None:
        if app_id == "-":
            return
        minute = int(self._clock() // 60)
        slots = self._apps.get(app_id)
        if slots is None:
            if len(self._apps) >= _MAX_APPS:
                return
            slots = self._apps[app_id] = [[-1, 0, 0] for _ in range(MINUTES)]
        slot = slots[minute % MINUTES]
        if slot[0] != minute:
            slot[0], slot[1], slot[2] = minute, 0, 0
        slot[1] += 1
        if status >= 500:
            slot[2] += 1

    def last_hour(self, app_id: str) -> list[tuple[int, int]]:
        """(requests, errors) per minute, oldest first, the current minute last."""
        now = int(self._clock() // 60)
        slots = self._apps.get(app_id)
        out = []
        for minute in range(now - MINUTES + 1, now + 1):
            slot = slots[minute % MINUTES] if slots is not None else None
            out.append((slot[1], slot[2]) if slot is not None and slot[0] == minute else (0, 0))
        return out

    def snapshot(self) -> dict[str, list[tuple[int, int]]]:
        """``last_hour`` of every appId that had a request within the hour."""
        out = {}
        for app_id in list(self._apps):
            minutes = self.last_hour(app_id)
            if any(r for r, _ in minutes):
                out[app_id] = minutes
        return out


def merge(parts: list[dict[str, list[tuple[int, int]]]]) -> dict[str, list[tuple[int, int]]]:
    """Minute-by-minute sums of several processes' snapshots (taken within the same minute)."""
    total: dict[str, list[tuple[int, int]]] = {}
    for part in parts:
        for app_id, minutes in part.items():
            mine = total.setdefault(app_id, [(0, 0)] * MINUTES)
            total[app_id] = [
                (a + int(r), b + int(e)) for (a, b), (r, e) in zip(mine, minutes, strict=False)
            ]
    return total
