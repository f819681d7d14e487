"""The daily walks run inside the server (docs/http-api.md "Change feed"): the loop starts with
the app, walks a connection that never had a walk, and outlives a turn that fails."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy.changes import schedule
from proxy.store.base import WalkRecord
from tests.changes.test_feed import feed_config


async def published(store: Any, app: str) -> WalkRecord:
    for _ in range(400):
        walk = await store.get_walk(app)
        if walk is not None and walk.state == "published":
            return walk
        await asyncio.sleep(0.05)
    raise AssertionError(f"{app} was never walked")


async def test_the_server_walks_by_itself_and_survives_a_failing_turn(
    sandbox: Any, start_proxy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule, "NAP", 0.05)
    real_turn = schedule.DailyWalks.turn
    failures = []

    async def flaky(self: schedule.DailyWalks, now: datetime | None = None) -> list[WalkRecord]:
        if not failures:
            failures.append(datetime.now(UTC))
            raise RuntimeError("a bug in one turn")
        return await real_turn(self, now)

    monkeypatch.setattr(schedule.DailyWalks, "turn", flaky)
    proxy = await start_proxy(sandbox, feed_config(tmp_path, sandbox))
    walk = await published(proxy.services.store, "app-7")
    assert failures and walk.counts["users"]["created"] > 0
    await published(proxy.services.store, "app-8")


async def test_the_daily_slot_is_on_the_districts_clock_and_a_pause_holds_the_walk(
    sandbox: Any, start_proxy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    async def idle(self: schedule.DailyWalks) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(schedule.DailyWalks, "run_forever", idle)
    doc = feed_config(tmp_path, sandbox)
    doc["districts"]["springfield"]["timezone"] = "America/New_York"
    doc["districts"]["springfield"]["pauses"] = [
        {"from": dt.date(2030, 7, 1), "to": dt.date(2030, 7, 31), "reason": "summer rollover"}
    ]
    proxy = await start_proxy(sandbox, doc)
    conn = proxy.services.runtime.current.connections["app-7"]
    # 06:30 UTC on 2 January is 01:30 in New York: the last 02:00 there was the day before.
    now = datetime(2030, 1, 2, 6, 30, tzinfo=UTC)
    assert schedule.last_slot(conn, now) == datetime(2030, 1, 1, 7, 0, tzinfo=UTC)
    assert schedule.last_slot(conn, now.replace(hour=7)) == datetime(2030, 1, 2, 7, 0, tzinfo=UTC)
    # During the district's pause no walk starts; after it, the walk is due again.
    assert await schedule.DailyWalks(proxy.services).turn(datetime(2030, 7, 10, tzinfo=UTC)) == []
    walked = await schedule.DailyWalks(proxy.services).turn(datetime(2030, 8, 2, 12, tzinfo=UTC))
    assert sorted(w.app_id for w in walked) == ["app-7", "app-8"]
