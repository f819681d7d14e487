"""``serve --workers N`` (docs/commands.md ``serve``): the real CLI as a subprocess, a real sandbox
district, a real sqlite store, signals sent to real processes.

Workers are found through the supervisor's JSON log lines (``worker ready`` names each
worker's pid and its private admin socket); each worker's own ``/metrics`` on that socket shows
what that worker served, and the supervisor's ``/metrics`` must show the sum.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.served import CLI, REPO, Served
from tests.served import cli as _cli
from tests.served import gone as _gone
from tests.served import wait_ready as _ready
from tests.support import ADMIN_TOKEN, base_config, free_port, toml_dumps


def _write_config(tmp_path: Path, sandbox: Any, **changes: Any) -> Path:
    doc = base_config(tmp_path, sandbox, drain_timeout="5s")
    doc["server"]["listen"] = f"127.0.0.1:{free_port()}"
    doc["admin"]["listen"] = f"127.0.0.1:{free_port()}"
    for key, value in changes.items():
        doc[key] = value
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(doc))
    return path


def _sum(metrics_text: str, family: str, **labels: str) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(metrics_text):
        for sample in fam.samples:
            if sample.name == family and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def _text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def _worker_metrics(socket_path: str) -> str:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path)) as s:
        return await _text(s, "http://worker/metrics")


async def _burst(url: str, token: str, n: int) -> list[int]:
    """n requests, each on a new connection, so the kernel spreads them over the workers."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        statuses = []
        for _ in range(n):
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                await resp.read()
                statuses.append(resp.status)
        return statuses


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.stop()


@pytest.mark.timeout(180)
async def test_two_workers_share_the_port_sum_metrics_survive_a_crash_reload_and_drain(
    sandbox: Any, tmp_path: Path, served: list[Served]
) -> None:
    config = _write_config(tmp_path, sandbox)
    issued = await _cli("tokens", "issue", "acme", "--config", str(config))
    token = issued.strip().splitlines()[-1]
    proc = Served(config, workers=2)
    served.append(proc)
    await _ready(proc, 2)
    workers = proc.ready_workers()
    pids = {line["pid"] for line in workers.values()}
    assert len(pids) == 2 and proc.process.pid not in pids
    users = f"{proc.url}/app-7/ims/oneroster/v1p1/users?limit=1"

    async with aiohttp.ClientSession() as admin:
        # Both workers serve one port; /metrics is the sum of what each one counted.
        assert await _burst(users, token, 40) == [200] * 40
        per_worker = [
            _sum(await _worker_metrics(line["admin_socket"]), "oneroster_proxy_requests_total")
            for line in workers.values()
        ]
        assert all(n > 0 for n in per_worker), per_worker
        assert sum(per_worker) == 40
        total = _sum(
            await _text(admin, f"{proc.admin_url}/metrics"),
            "oneroster_proxy_requests_total",
            code="200",
            resource="users",
        )
        assert total == 40

        # A worker killed outright is replaced; the others keep serving meanwhile, and the
        # dead worker's counts stay in the sum.
        victim = workers[0]
        os.kill(victim["pid"], signal.SIGKILL)
        await proc.wait_for(
            "the crash noticed",
            lambda: proc.logged("worker exited; replacing it", pid=victim["pid"]),
        )
        assert await _burst(users, token, 10) == [200] * 10
        await proc.wait_for(
            "a replacement", lambda: proc.ready_workers()[0]["pid"] != victim["pid"]
        )
        replacement = proc.ready_workers()[0]["pid"]
        assert _gone(victim["pid"]) and replacement not in pids
        await _ready(proc, 2)
        assert await _burst(users, token, 10) == [200] * 10
        text = await _text(admin, f"{proc.admin_url}/metrics")
        assert _sum(text, "oneroster_proxy_requests_total", code="200", resource="users") == 60

        # SIGHUP to the supervisor reaches every worker: a connection added to the file is
        # served by all of them, and each counts its reload.
        doc_text = config.read_text()
        config.write_text(
            doc_text
            + toml_dumps(
                {
                    "connections": {
                        "app-9": {
                            "vendor": "acme",
                            "district": "springfield",
                            "key": sandbox.key,
                            "secret": sandbox.secret,
                            "scopes": ["roster-core.readonly"],
                        }
                    }
                }
            )
        )
        proc.process.send_signal(signal.SIGHUP)

        async def reloads(result: str) -> float:
            return _sum(
                await _text(admin, f"{proc.admin_url}/metrics"),
                "oneroster_proxy_config_reloads_total",
                result=result,
            )

        deadline = time.monotonic() + 30
        while await reloads("ok") < 2:
            assert time.monotonic() < deadline, "SIGHUP did not reach both workers"
            await asyncio.sleep(0.05)
        assert await reloads("ok") == 2
        app9 = f"{proc.url}/app-9/ims/oneroster/v1p1/users?limit=1"
        assert await _burst(app9, token, 20) == [200] * 20

        # POST /admin/reload on the admin listener reloads every worker too; a broken file is
        # refused by each of them and the running config stays.
        config.write_text(doc_text + '\n[connections.app-10]\nvendor = "nobody"\n')
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with admin.post(f"{proc.admin_url}/admin/reload", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 400, body
        assert body["ok"] is False
        assert sorted(w["pid"] for w in body["workers"]) == sorted(
            line["pid"] for line in proc.ready_workers().values()
        )
        assert all(w["ok"] is False and w["errors"] for w in body["workers"])
        assert await reloads("error") == 2
        assert await _burst(app9, token, 6) == [200] * 6

        config.write_text(doc_text)
        async with admin.post(f"{proc.admin_url}/admin/reload", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert body["ok"] is True and [w["ok"] for w in body["workers"]] == [True, True]
        assert await reloads("ok") == 4
        assert set(await _burst(app9, token, 10)) == {404}  # app-9 is gone from every worker

    # SIGTERM: every worker drains and exits, then the supervisor exits 0.
    live = [line["pid"] for line in proc.ready_workers().values()]
    proc.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.process.wait, 30)
    assert code == 0, "\n".join(proc.raw[-20:])
    assert all(_gone(pid) for pid in live)
    assert proc.logged("stopped", exit_code=0)


@pytest.mark.timeout(120)
async def test_workers_of_a_killed_supervisor_stop_and_free_the_port(
    sandbox: Any, tmp_path: Path, served: list[Served]
) -> None:
    config = _write_config(tmp_path, sandbox)
    proc = Served(config, workers=2)
    served.append(proc)
    await _ready(proc, 2)
    pids = [line["pid"] for line in proc.ready_workers().values()]
    run_dir = Path(next(iter(proc.ready_workers().values()))["admin_socket"]).parent
    proc.process.kill()
    proc.process.wait(10)
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, "orphaned workers kept running"
        await asyncio.sleep(0.1)
    # Nothing listens on the gateway port any more.
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"{proc.url}/healthz")
    # A supervisor killed outright cannot remove its run directory (config snapshot, admin
    # sockets): the next start does, and keeps its own.
    assert run_dir.exists()
    again = Served(config, workers=2)
    served.append(again)
    await _ready(again, 2)
    assert not run_dir.exists()
    own = Path(next(iter(again.ready_workers().values()))["admin_socket"]).parent
    assert own.exists() and own != run_dir


async def test_workers_must_be_positive(tmp_path: Path, sandbox: Any) -> None:
    from proxy import config as config_mod
    from proxy.errors import ConfigError
    from proxy.serve.workers import Supervisor

    path = _write_config(tmp_path, sandbox)
    with pytest.raises(ConfigError, match="--workers"):
        Supervisor(str(path), config_mod.load(str(path)), 0)


async def test_ctrl_c_stops_every_worker_quietly(tmp_path: Path, sandbox: Any) -> None:
    # Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the supervisor
    # and every worker. The operator sees log lines, never a KeyboardInterrupt traceback, and
    # no prometheus_client warning from any worker.
    config = _write_config(tmp_path, sandbox)
    proc = _serve_in_own_group(config, workers=2)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(
        target=lambda: lines.extend(raw.decode(errors="replace") for raw in proc.stdout or ()),
        daemon=True,
    )
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while sum('"worker ready"' in line for line in list(lines)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{_listen(config, 'admin')}/metrics") as resp:
                assert resp.status == 200  # a scrape (the supervisor adds up the workers)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    reader.join(10)
    text = "".join(lines)
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "Clearing labels" not in text and "multi-process mode" not in text, text


def _serve_in_own_group(config: Path, workers: int) -> subprocess.Popen[bytes]:
    """``serve --workers N`` as a terminal runs it: the leader of its process group, so a
    signal to the group reaches it and everything it started, as Ctrl-C does."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [*CLI, "serve", "--config", str(config), "--workers", str(workers)],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _listen(config: Path, table: str) -> str:
    return str(tomllib.loads(config.read_text())[table]["listen"])
