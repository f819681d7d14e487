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
