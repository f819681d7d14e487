"""SIGHUP reload and SIGTERM drain of a real ``oneroster-proxy serve`` process (docs/
``serve``), in front of the sandbox district.

``ProxyProcess`` runs the real command in a subprocess with its log in a file; the tests send
it real signals and watch the log, the admin listener and what vendors see.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import ADMIN_TOKEN, auth, base_config, toml_dumps

ROOT = Path(__file__).resolve().parents[1]
PAGE = "v1p1/users?limit=100"  # ~66 KB from the sandbox: 65 slow chunks with faults.slow_body


class ProxyProcess:
    """``oneroster-proxy [--log-format F] serve --config PATH`` as a subprocess."""

    def __init__(self, tmp_path: Path, doc: dict[str, Any], *, log_format: str = "json") -> None:
        self.tmp_path = tmp_path
        self.config_path = tmp_path / "proxy.toml"
        self.log_path = tmp_path / "proxy.log"
        self.log_format = log_format
        self.doc = doc
        self.write(doc)
        self.process: asyncio.subprocess.Process | None = None
        self.gateway_port = 0
        self.admin_port = 0

    def write(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.config_path.write_text(toml_dumps(doc))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def app_url(self, rest: str, app: str = "app-7") -> str:
        return f"{self.url}/{app}/ims/oneroster/{rest}"

    async def start(self) -> ProxyProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from proxy.cli import main; main()",
                "--log-format",
                self.log_format,
                "serve",
                "--config",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env=env,
            )
        line = await self.wait_for_log("oneroster-proxy listening", within=20)
        if self.log_format == "json":
            fields = json.loads(line)
            gateway, admin = fields["gateway"], fields["admin"]
        else:
            parts = dict(p.split("=", 1) for p in line.split() if "=" in p)
            gateway, admin = parts["gateway"], parts["admin"]
        self.gateway_port = int(gateway.rsplit(":", 1)[1])
        self.admin_port = int(admin.rsplit(":", 1)[1])
        return self

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]

    async def wait_for_log(self, needle: str, *, within: float = 10, after: int = 0) -> str:
        """The first log line holding ``needle`` (counting from line ``after``)."""
        deadline = time.monotonic() + within
        while True:
            lines = self.text().splitlines()[after:]
            for line in lines:
                if needle in line:
                    return line
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"proxy exited {self.process.returncode}:\n{self.text()}")
            assert time.monotonic() < deadline, f"no {needle!r} in the log:\n{self.text()}"
            await asyncio.sleep(0.05)

    def lines(self) -> int:
        return len(self.text().splitlines())

    def send(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, within: float) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), within)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def spawn(tmp_path):
    started: list[ProxyProcess] = []

    async def make(doc: dict[str, Any], **kwargs: Any) -> ProxyProcess:
        proc = ProxyProcess(tmp_path, doc, **kwargs)
        started.append(proc)
        return await proc.start()

    yield make
    for proc in started:
        await proc.stop()


async def issue_token(proc: ProxyProcess, http: aiohttp.ClientSession, vendor: str = "acme") -> str:
    async with http.post(
        f"{proc.admin_url}/admin/vendors/{vendor}/tokens", headers=auth(ADMIN_TOKEN)
    ) as resp:
        assert resp.status == 201
        return str((await resp.json())["token"])


async def status_of(http: aiohttp.ClientSession, url: str, token: str) -> int:
    async with http.get(url, headers=auth(token)) as resp:
        await resp.read()
        return resp.status


async def read_all(
    http: aiohttp.ClientSession, url: str, token: str, started: asyncio.Event
) -> tuple[int, bytes, int | None]:
    """GET ``url``; sets ``started`` once the head arrived; returns status, body, length."""
    async with http.get(url, headers=auth(token)) as resp:
        started.set()
        body = await resp.read()
        return resp.status, body, resp.content_length


async def metric(proc: ProxyProcess, http: aiohttp.ClientSession, line_start: str) -> float:
    async with http.get(f"{proc.admin_url}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_sighup_swaps_config_while_a_stream_finishes_on_the_old_one(
    sandbox, spawn, tmp_path, http
):
    doc = base_config(tmp_path, sandbox)
    proc = await spawn(doc)
    token = await issue_token(proc, http)
    assert await status_of(http, proc.app_url("v1p1/orgs"), token) == 200

    sandbox.faults.slow_body = 0.02  # the page takes ~1.3 s to stream
    started = asyncio.Event()
    stream = asyncio.ensure_future(read_all(http, proc.app_url(PAGE), token, started))
    await asyncio.wait_for(started.wait(), 5)

    # The new config disables app-7 and gives app-8 more scopes.
    new = copy.deepcopy(doc)
    new["connections"]["app-7"]["enabled"] = False
    proc.write(new)
    mark = proc.lines()
    proc.send(signal.SIGHUP)
    line = await proc.wait_for_log('"config.reload"', after=mark)
    assert json.loads(line)["result"] == "ok" and json.loads(line)["interface"] == "signal"
    sandbox.faults.slow_body = None
    assert await status_of(http, proc.app_url("v1p1/orgs"), token) == 403  # the new config
    assert not stream.done(), "the stream should still be in flight after the reload"

    status, body, length = await asyncio.wait_for(stream, 10)
    # rewrite_hrefs (on by default) sends the rewritten body chunked, without a length.
    assert status == 200 and (length is None or len(body) == length)
    assert len(json.loads(body)["users"]) == 100  # complete, on the old config

    assert await metric(proc, http, 'oneroster_proxy_config_reloads_total{result="ok"}') == 1
    assert await metric(proc, http, 'oneroster_proxy_config_reloads_total{result="error"}') == 0


async def test_sighup_with_an_invalid_config_keeps_the_old_one(sandbox, spawn, tmp_path, http):
    doc = base_config(tmp_path, sandbox)
    proc = await spawn(doc)
    token = await issue_token(proc, http)

    bad = copy.deepcopy(doc)
    bad["connections"]["app-7"]["enabled"] = False  # would be a visible change if applied
    bad["connections"]["app-7"]["scopes"] = ["roster.readonly", "gradebook.write"]
    bad["districts"]["springfield"]["bogus"] = 1
    proc.write(bad)
    mark = proc.lines()
    proc.send(signal.SIGHUP)
    line = json.loads(await proc.wait_for_log('"config.reload"', after=mark))
    assert line["result"] == "error" and line["level"] == "error"
    problems = " | ".join(line["problems"])
    assert "connections.app-7.scopes[1]" in problems and "districts.springfield.bogus" in problems
    assert await status_of(http, proc.app_url("v1p1/orgs"), token) == 200  # old config serves
    assert await metric(proc, http, 'oneroster_proxy_config_reloads_total{result="error"}') == 1
    assert await metric(proc, http, 'oneroster_proxy_config_reloads_total{result="ok"}') == 0

    # An unparseable file is refused the same way.
    proc.config_path.write_text("[server\nlisten = ")
    mark = proc.lines()
    proc.send(signal.SIGHUP)
    assert json.loads(await proc.wait_for_log('"config.reload"', after=mark))["result"] == "error"
    assert await metric(proc, http, 'oneroster_proxy_config_reloads_total{result="error"}') == 2

    # Fixed again: the next SIGHUP applies it; the audit trail holds all three.
    good = copy.deepcopy(doc)
    good["connections"]["app-7"]["enabled"] = False
    proc.write(good)
    mark = proc.lines()
    proc.send(signal.SIGHUP)
    assert json.loads(await proc.wait_for_log('"config.reload"', after=mark))["result"] == "ok"
    assert await status_of(http, proc.app_url("v1p1/orgs"), token) == 403
    from tests.cli.test_tokens import run_cli

    code, out, err = await run_cli("audit", "--config", str(proc.config_path), "--json")
    assert code == 0, err
    reloads = [e for e in json.loads(out) if e["action"] == "config.reload"]
    assert [(e["interface"], e["detail"]["result"]) for e in reloads] == [
        ("signal", "error"),
        ("signal", "error"),
        ("signal", "ok"),
    ]


async def test_sigterm_drains_in_flight_streams_then_exits_0(sandbox, spawn, tmp_path, http):
    proc = await spawn(base_config(tmp_path, sandbox, drain_timeout="10s"))
    token = await issue_token(proc, http)
    sandbox.faults.slow_body = 0.02
    started = asyncio.Event()
    stream = asyncio.ensure_future(read_all(http, proc.app_url(PAGE), token, started))
    await asyncio.wait_for(started.wait(), 5)

    signalled = time.monotonic()
    proc.send(signal.SIGTERM)
    await proc.wait_for_log('"drain"')
    # Draining: no new connections, and the admin listener says "not ready".
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as fresh:
            await status_of(fresh, proc.app_url("v1p1/orgs"), token)
    async with http.get(f"{proc.admin_url}/readyz") as resp:
        assert resp.status == 503 and (await resp.json())["status"] == "draining"

    status, body, length = await asyncio.wait_for(stream, 10)
    # Chunked when hrefs are rewritten (the default): the whole JSON page says it is complete.
    assert status == 200 and (length is None or len(body) == length)
    assert len(json.loads(body)["users"]) == 100
    assert await proc.wait(10) == 0
    assert time.monotonic() - signalled < 8  # it left as soon as the stream was done
    assert '"stopped"' in proc.text()


async def test_sigterm_cuts_what_outlives_drain_timeout_and_still_exits_0(
    sandbox, spawn, tmp_path, http
):
    proc = await spawn(base_config(tmp_path, sandbox, drain_timeout="1s"))
    token = await issue_token(proc, http)
    sandbox.faults.slow_body = 0.1  # ~6.5 s to stream: longer than the drain allows
    started = asyncio.Event()
    stream = asyncio.ensure_future(read_all(http, proc.app_url(PAGE), token, started))
    await asyncio.wait_for(started.wait(), 5)

    signalled = time.monotonic()
    proc.send(signal.SIGTERM)
    assert await proc.wait(10) == 0
    assert time.monotonic() - signalled < 4  # drain_timeout (1 s) and the cancellation
    # The vendor sees a broken transfer, never a complete-looking 200.
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(stream, 5)
    if not stream.done():
        stream.cancel()
    with contextlib.suppress(BaseException):
        await stream
