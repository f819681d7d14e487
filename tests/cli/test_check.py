"""``check`` as a new operator runs it, through the real CLI against the sandbox district
(docs/http-api.md): a district sharing
more than ``scopes`` is ``ok`` with a warning, ``check --all --json`` prints one JSON array, and
``check --all`` shows progress on stderr when (and only when) stderr is a terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
import threading

from tests.cli.test_tokens import ROOT, run_cli
from tests.support import ALL_SCOPES, base_config


async def exact_share(sandbox, start_proxy, tmp_path):
    """Both connections with every scope the sandbox shares: every item passes."""
    doc = base_config(tmp_path, sandbox)
    doc["connections"]["app-8"]["scopes"] = list(ALL_SCOPES)
    return await start_proxy(sandbox, doc)


async def test_a_district_sharing_more_than_scopes_is_ok_with_a_warning(proxy):
    # app-8 has scopes = ["roster-core.readonly"]; the sandbox shares every scope.
    code, out, err = await run_cli("check", "app-8", "--config", str(proxy.config_path))
    assert code == 0, out + err
    line = next(row for row in out.splitlines() if "data_shared" in row)
    assert line.split()[0] == "ok", line
    assert "warning: the district shares more than scopes" in line
    assert "gradebook.readonly" in line and "the proxy refuses those paths" in line


async def test_check_all_json_is_one_array_and_no_progress_when_piped(
    sandbox, start_proxy, tmp_path
):
    proxy = await exact_share(sandbox, start_proxy, tmp_path)
    code, out, err = await run_cli("check", "--all", "--json", "--config", str(proxy.config_path))
    assert code == 0, err
    reports = json.loads(out)
    assert isinstance(reports, list)
    assert [r["app"] for r in reports] == ["app-7", "app-8"]
    assert all(r["ok"] and {c["name"] for c in r["checks"]} >= {"data_shared"} for r in reports)
    # stderr is a pipe here: the final count, no progress.
    assert "checking:" not in err and "\r" not in err
    assert "2 connections checked, 0 failing" in err


async def test_check_all_shows_progress_on_a_terminal(sandbox, start_proxy, tmp_path):
    proxy = await exact_share(sandbox, start_proxy, tmp_path)
    master, slave = pty.openpty()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from proxy.cli import main; main()",
            "check",
            "--all",
            "--config",
            str(proxy.config_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=slave,
            cwd=ROOT,
            env=env,
        )
        os.close(slave)
        slave = -1
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        await asyncio.to_thread(reader.join, 10)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert process.returncode == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "checking: 1/2 done" in shown and "checking: 2/2 done" in shown, shown
    assert "2 connections checked, 0 failing" in shown
    # stdout (a pipe) holds the summary lines only.
    assert [line.split()[0] for line in out.decode().splitlines()] == ["app-7", "app-8"]


async def test_check_all_goes_on_past_a_store_connection_changed_outside_the_proxy(
    sandbox, start_proxy, tmp_path
):
    """One store record changed by a write to the store alone: ``check --all`` names it as
    failing ("credentials must be entered again") and still checks every other connection."""
    import sqlite3

    from proxy.connections import managed
    from proxy.connections.managed import ConfigEntries
    from proxy.store.crypto import new_key

    doc = base_config(tmp_path, sandbox)
    doc["connections"]["app-8"]["scopes"] = list(ALL_SCOPES)
    doc["store"]["secret_keys"] = [new_key()]
    proxy = await start_proxy(sandbox, doc)
    store, entries = proxy.services.store, ConfigEntries.of(proxy.config)
    await managed.add_district(
        store, entries, "shelbyville", {"base_url": sandbox.base_url}, interface="cli"
    )
    table = {
        "vendor": "acme", "district": "shelbyville", "key": sandbox.key,
        "secret": sandbox.secret, "scopes": list(ALL_SCOPES),
    }  # fmt: skip
    box = proxy.services.secret_box()
    await managed.add_connection(store, entries, box, "store-1", table, interface="cli")
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute(
            "UPDATE districts SET base_url = 'http://127.0.0.1:9' WHERE name = 'shelbyville'"
        )
    code, out, err = await run_cli("check", "--all", "--config", str(proxy.config_path))
    assert code == 1
    assert "2 connections checked, 0 failing" in err
    assert "FAIL  connection store-1: credentials must be entered again" in err
    assert sandbox.secret not in out + err


async def test_a_cli_check_is_kept_so_the_board_shows_it_at_once(sandbox, start_proxy, tmp_path):
    # docs/checklist.md "Background checks": a check run from the CLI is kept in the store like
    # a background one; the console's board (and its "failing" filter) shows it with no
    # "Run check now" pressed.
    from tests.check.test_background import with_bad_connection
    from tests.console_support import ConsoleClient

    proxy = await start_proxy(sandbox, with_bad_connection(base_config(tmp_path, sandbox)))
    config = str(proxy.config_path)
    client = ConsoleClient(proxy.admin_url)
    try:
        await client.sign_in()
        _, board, _ = await client.get("/console/?failing=1")
        assert 'data-app="app-9"' not in board
        code, _, err = await run_cli("check", "app-9", "--config", config)
        assert code == 1 and "warning" not in err, err
        code, _, err = await run_cli("check", "--all", "--config", config)
        assert code == 1, err
        _, board, _ = await client.get("/console/?failing=1")
        assert 'data-app="app-9"' in board and 'data-app="app-7"' not in board
        assert "credentials_accepted" in board
        _, everything, _ = await client.get("/console/")
        assert "not yet" not in everything  # app-7 and app-8 were kept by check --all
    finally:
        await client.close()
    history = await proxy.services.store.list_check_results("app-9")
    assert len(history) == 2 and not history[0].ok
