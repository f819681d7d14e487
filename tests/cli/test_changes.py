"""``oneroster-proxy changes walk|accept|discard|list`` (docs/commands.md) against a real
sandbox district, run as the operator runs them: a subprocess reading the config file."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy.sandbox.state import DISTRICT
from tests.changes.test_feed import feed_config
from tests.served import CLI, REPO
from tests.support import toml_dumps


async def run(*args: str) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_walk_list_hold_and_accept_from_the_command_line(
    sandbox: Any, tmp_path: Path
) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(feed_config(tmp_path, sandbox)))
    config = ("--config", str(path))
    district = sandbox.app[DISTRICT].views["v1p2"]["users"]

    code, out, err = await run("changes", "walk", "app-7", *config)
    assert code == 0, err
    users = next(line for line in out.splitlines() if line.startswith("users "))
    assert f"{len(district)} records" in users and f"{len(district)} created" in users
    assert "app-7: walk published" in out

    code, out, _ = await run("changes", "list", "app-7", "--json", *config)
    listed = json.loads(out)
    assert code == 0 and {c["change"] for c in listed["changes"]} == {"created"}
    assert len({c["sourcedId"] for c in listed["changes"] if c["collection"] == "users"}) == len(
        district
    )
    cursor = listed["cursor"]
    code, out, err = await run("changes", "list", "app-7", "--since", cursor, *config)
    assert code == 0 and out == "" and err == f"cursor: {cursor}\n"

    gone = list(district)[:50]
    for sid in gone:
        del district[sid]
    code, out, err = await run("changes", "walk", "app-7", *config)
    assert code == 1 and "walk held, nothing published" in out and "users: 50 of" in out
    code, out, err = await run("changes", "list", "app-7", "--since", cursor, *config)
    assert code == 0 and out == ""
    code, out, err = await run("changes", "accept", "app-7", *config)
    assert code == 0 and "is published (0 created, 0 updated, 50 deleted)" in out, err
    code, out, err = await run("changes", "list", "app-7", "--since", cursor, *config)
    assert sorted(line.split()[-1] for line in out.splitlines()) == sorted(gone)
    code, out, err = await run("changes", "discard", "app-7", *config)
    assert code == 1 and "no walk of app-7 is held" in err


async def test_an_unknown_app_is_exit_2_and_one_without_a_feed_1(
    sandbox: Any, tmp_path: Path
) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(feed_config(tmp_path, sandbox)))
    code, _, err = await run("changes", "walk", "app-nope", "--config", str(path))
    assert code == 2 and 'unknown appId "app-nope"' in err
    doc = feed_config(tmp_path, sandbox)
    doc["connections"]["app-8"]["changes"] = False
    path.write_text(toml_dumps(doc))
    code, _, err = await run("changes", "walk", "app-8", "--config", str(path))
    assert code == 1 and "app-8 has no change feed" in err


async def test_a_store_connection_keeps_a_change_feed(sandbox: Any, tmp_path: Path) -> None:
    doc = feed_config(tmp_path, sandbox)
    del doc["connections"]
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(doc))
    config = ("--config", str(path))
    env = dict(os.environ, PYTHONPATH=str(REPO), SANDBOX_SECRET=sandbox.secret)
    proc = await asyncio.create_subprocess_exec(
        *CLI, "connections", "add", "app-9", *config, "--vendor", "acme",
        "--district", "springfield", "--key", sandbox.key, "--scopes", "roster-core.readonly",
        "--changes", "--max-deletions", "5", "--secret-env", "SANDBOX_SECRET", "--json",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    added = json.loads(out)
    assert (added["changes"], added["max_deletions"]) == (True, "5")
    code, out, err = await run("changes", "walk", "app-9", *config)
    assert code == 0 and "app-9: walk published" in out, err
    assert not any(line.startswith("demographics") for line in out.splitlines())
    code, out, err = await run("connections", "update", "app-9", *config, "--max-deletions", "x%")
    assert code == 2 and "max_deletions" in err


async def test_walk_shows_progress_on_a_terminal_only(sandbox: Any, tmp_path: Path) -> None:
    import pty

    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(feed_config(tmp_path, sandbox)))
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        *CLI, "changes", "walk", "app-7", "--config", str(path), cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    out, _ = await proc.communicate()
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end closed: all read
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.returncode == 0
    assert b"\rwalking users: " in shown and b"\x1b[K" in shown
    assert b"walking" not in out  # stdout has the counts only
    # Not a terminal: no progress at all.
    code, _, err = await run("changes", "walk", "app-7", "--config", str(path))
    assert code == 0 and "walking" not in err


async def test_removing_a_store_connection_forgets_its_feed(sandbox: Any, tmp_path: Path) -> None:
    from proxy.connections import managed
    from proxy.store.base import ConnectionRecord
    from proxy.store.sqlite import SqliteStore
    from tests.store.test_changes import publish

    store = SqliteStore(str(tmp_path / "store.db"))
    await store.open()
    try:
        await store.add_connection(
            ConnectionRecord(
                app_id="app-7", vendor="acme", district="springfield", key="k",
                secret="orp1.x.y", scopes=("roster-core.readonly",),
                created=datetime.now(UTC), updated=datetime.now(UTC), changes=True,
            ),
            district_in_store=False,
        )  # fmt: skip
        await publish(store, "w1", {"u1": "h"})
        await managed.remove_connection(store, managed.ConfigEntries(), "app-7", interface="cli")
        assert await store.get_walk("app-7") is None
        assert await store.read_changes("app-7", 0, 10) == []
    finally:
        await store.close()
