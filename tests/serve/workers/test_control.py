"""The console under ``serve --workers N``: the supervisor serves the console, the workers serve
the traffic, and the board's last hour is the sum of every worker's (docs/http-api.md,
``serve --workers N``). The real CLI as a subprocess, a real sandbox district."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.console_support import ConsoleClient
from tests.serve.workers.test_supervisor import _burst, _write_config
from tests.served import Served
from tests.served import cli as _cli
from tests.served import wait_ready as _ready


async def test_the_board_adds_up_every_workers_requests(sandbox: Any, tmp_path: Path) -> None:
    config = _write_config(tmp_path, sandbox)
    token = (await _cli("tokens", "issue", "acme", "--config", str(config))).strip().split()[-1]
    proc = Served(config, workers=2)
    try:
        await _ready(proc, 2)
        assert await _burst(f"{proc.url}/app-7/ims/oneroster/v1p1/orgs", token, 30) == [200] * 30
        console = ConsoleClient(proc.admin_url)
        try:
            status, _, _ = await console.sign_in()
            assert status == 200
            _, board, _ = await console.get("/console/")
        finally:
            await console.close()
        row = re.search(r'<tr data-app="app-7">(.*?)</tr>', board, re.S)
        assert row is not None
        shown = re.sub(r"<[^>]+>", "", row.group(1))
        assert re.search(r"\b30 req, 0% refused by the district, 0% errors", shown), shown
    finally:
        proc.stop()
