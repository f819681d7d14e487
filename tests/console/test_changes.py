"""The console's change feed (docs/http-api.md "The console"): the board and the connection
page show each connection's last walk and its counts; a held walk is accepted or discarded
with a button, which publishes it (or not) and is recorded in the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.sandbox.state import DISTRICT
from tests.changes.test_feed import feed_config, schedule_by_hand, walk
from tests.console_support import ConsoleClient

__all__ = ["schedule_by_hand"]  # the fixture, used here too: no walk beside the test's


@pytest.fixture
async def proxy(sandbox: Any, start_proxy: Any, tmp_path: Path) -> Any:
    return await start_proxy(sandbox, feed_config(tmp_path, sandbox))


@pytest.fixture
async def console(proxy: Any) -> Any:
    client = ConsoleClient(proxy.admin_url)
    await client.sign_in()
    yield client
    await client.close()


async def held_walk(proxy: Any, sandbox: Any) -> int:
    await walk(proxy)
    records = sandbox.app[DISTRICT].views["v1p2"]["users"]
    gone = list(records)[: len(records) // 3]
    for sid in gone:
        del records[sid]
    assert (await walk(proxy)).state == "held"
    return len(gone)


async def test_the_board_and_the_page_show_the_last_walk_and_accept_publishes_it(
    console: ConsoleClient, proxy: Any, sandbox: Any
) -> None:
    status, board, _ = await console.get("/console/")
    assert status == 200 and "no walk yet" in board
    first = await walk(proxy)
    users = first.counts["users"]["records"]
    status, board, _ = await console.get("/console/")
    row = board.split('data-app="app-7"')[1].split("</tr>")[0]
    assert "published" in row and "created" in row
    gone = await held_walk(proxy, sandbox)
    status, board, _ = await console.get("/console/")
    row = board.split('data-app="app-7"')[1].split("</tr>")[0]
    assert '<span class="status fail">held</span>' in row and f"{gone} deleted" in row

    status, page, _ = await console.get("/console/connections/app-7")
    assert status == 200
    assert (
        f"<tr><td>users</td><td>{users - gone}</td><td>0</td><td>0</td><td>{gone}</td></tr>" in page
    )
    assert f"users: {gone} of {users} records would be deleted" in page
    assert ">Accept</button>" in page and ">Discard</button>" in page

    status, page, _ = await console.post("/console/connections/app-7/changes/accept", {})
    assert status == 200 and "The held walk is published" in page
    assert ">Accept</button>" not in page
    changes = await proxy.services.store.read_changes("app-7", 0, 10_000)
    assert sum(1 for c in changes if c.change == "deleted") == gone
    audit = await proxy.services.store.list_audit()
    assert (audit[-1].action, audit[-1].interface) == ("changes.accept", "console")


async def test_discard_publishes_nothing(console: ConsoleClient, proxy: Any, sandbox: Any) -> None:
    await held_walk(proxy, sandbox)
    before = await proxy.services.store.read_changes("app-7", 0, 10_000)
    status, page, _ = await console.post("/console/connections/app-7/changes/discard", {})
    assert status == 200 and "nothing published" in page
    assert await proxy.services.store.read_changes("app-7", 0, 10_000) == before
    # Nothing is held any more: a second press is refused, and changes nothing.
    status, page, _ = await console.post("/console/connections/app-7/changes/discard", {})
    assert status == 404 and "no walk of app-7 is held" in page
