"""``serve --workers N`` (issue 6 part 2): the real CLI as a subprocess, a real sandbox
district, a real sqlite store, signals sent to real processes.

Workers are found through the supervisor's JSON log lines (``worker ready`` names each
worker's pid and its private admin socket); each worker's own ``/metrics`` on that socket shows
what that worker served, and the supervisor's ``/metrics`` must show the sum.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ADMIN_TOKEN, base_config, free_port, toml_dumps

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from proxy.cli import main; main()"]
START_TIMEOUT = 60.0  # two fresh interpreters on a loaded 2-core machine


class Served:
    """A ``serve --workers N`` process and the JSON lines it has logged so far."""

    def __init__(self, config: Path, workers: int) -> None:
        self.config = config
        doc_lines = config.read_text()
        self.gateway = _listen_port(doc_lines, "server")
        self.admin = _listen_port(doc_lines, "admin")
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.process = _popen([*CLI, "serve", "--config", str(config), "--workers", str(workers)])
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            text = raw.decode(errors="replace").rstrip("\n")
            self.raw.append(text)
            try:
                self.lines.append(json.loads(text))
            except ValueError:
                pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}"

    def logged(self, msg: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in list(self.lines)
            if line.get("msg") == msg and all(line.get(k) == v for k, v in fields.items())
        ]

    def ready_workers(self) -> dict[int, dict[str, Any]]:
        """index -> the latest ``worker ready`` line of that index."""
        latest: dict[int, dict[str, Any]] = {}
        for line in self.logged("worker ready"):
            latest[line["worker"]] = line
        return latest

    async def wait_for(
        self, what: str, check: Callable[[], Any], within: float = START_TIMEOUT
    ) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(
                    f"serve exited ({self.process.returncode}) waiting for {what}:\n"
                    + "\n".join(self.raw[-30:])
                )
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(self.raw[-30:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _listen_port(toml_text: str, table: str) -> int:
    return int(tomllib.loads(toml_text)[table]["listen"].rpartition(":")[2])


def _popen(argv: list[str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _cli(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


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


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); its state says it is dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.stop()


async def _ready(served: Served, workers: int) -> None:
    await served.wait_for(
        f"{workers} workers ready", lambda: len(served.ready_workers()) == workers
    )
    async with aiohttp.ClientSession() as session:

        async def readyz() -> bool:
            async with session.get(f"{served.admin_url}/readyz") as resp:
                return resp.status == 200

        deadline = time.monotonic() + START_TIMEOUT
        while not await readyz():
            assert time.monotonic() < deadline, "/readyz never became 200"
            await asyncio.sleep(0.05)


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
    # A supervisor killed outright cannot remove its run directory; the test does.
    shutil.rmtree(run_dir, ignore_errors=True)
    # Nothing listens on the gateway port any more.
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"{proc.url}/healthz")


async def test_workers_must_be_positive(tmp_path: Path, sandbox: Any) -> None:
    from proxy import config as config_mod
    from proxy.errors import ConfigError
    from proxy.workers import Supervisor

    path = _write_config(tmp_path, sandbox)
    with pytest.raises(ConfigError, match="--workers"):
        Supervisor(str(path), config_mod.load(str(path)), 0)
