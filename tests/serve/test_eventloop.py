"""The event loop ``serve`` runs on (``proxy.serve.eventloop``): uvloop where installed, asyncio's
own with ``ONEROSTER_PROXY_LOOP=asyncio``, a one-line error for anything else. A real
``serve`` process in front of the sandbox district; the loop is read from its listening line.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve.test_server import ProxyProcess, issue_token
from tests.support import auth, base_config

ROOT = Path(__file__).resolve().parents[1]
HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.mark.parametrize(
    "setting, expected",
    [
        pytest.param(None, "uvloop", marks=pytest.mark.skipif(not HAS_UVLOOP, reason="no uvloop")),
        ("asyncio", "asyncio"),
    ],
)
async def test_serve_runs_on_the_chosen_loop_and_answers(
    sandbox, tmp_path, http, monkeypatch, setting, expected
):
    if setting is None:
        monkeypatch.delenv("ONEROSTER_PROXY_LOOP", raising=False)
    else:
        monkeypatch.setenv("ONEROSTER_PROXY_LOOP", setting)
    proc = await ProxyProcess(tmp_path, base_config(tmp_path, sandbox)).start()
    try:
        listening = next(r for r in proc.records() if r["msg"] == "oneroster-proxy listening")
        assert listening["loop"] == expected
        token = await issue_token(proc, http)
        url = proc.app_url("rostering/v1p2/users?limit=2")
        async with http.get(url, headers=auth(token)) as resp:
            assert resp.status == 200
            assert (await resp.json())["users"]
    finally:
        await proc.stop()


def test_an_unknown_loop_is_a_one_line_error(tmp_path):
    config = tmp_path / "proxy.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:0"\n')
    env = dict(os.environ, ONEROSTER_PROXY_LOOP="tokio", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from proxy.cli import main; main()",
            "serve",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "ONEROSTER_PROXY_LOOP: must be one of uvloop, asyncio, not 'tokio'"
    )
