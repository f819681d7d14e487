"""A real ``oneroster-proxy serve`` as a subprocess, seen through its JSON log lines
(``worker ready`` names each worker's pid and private admin socket), and the CLI run the way
an operator runs it. Shared by the worker, failover and chaos tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from proxy.cli import main; main()"]
START_TIMEOUT = 60.0  # two fresh interpreters on a loaded 2-core machine


class Served:
    """A ``serve --workers N`` process and the JSON lines it has logged so far."""

    def __init__(self, config: Path, workers: int | None = None) -> None:
        self.config = config
        doc_lines = config.read_text()
        self.gateway = _listen_port(doc_lines, "server")
        self.admin = _listen_port(doc_lines, "admin")
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        extra = ["--workers", str(workers)] if workers else []
        self.process = _popen([*CLI, "serve", "--config", str(config), *extra])
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


async def cli(*args: str) -> str:
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


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); its state says it is dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] in ("Z", "X")
    except OSError:
        return True


async def wait_ready(served: Served, workers: int = 0) -> None:
    await served.wait_for(
        f"{workers} workers ready", lambda: len(served.ready_workers()) == workers
    )
    async with aiohttp.ClientSession() as session:

        async def readyz() -> bool:
            try:
                async with session.get(f"{served.admin_url}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientConnectionError:  # a single process still starting
                assert served.process.poll() is None, "\n".join(served.raw[-30:])
                return False

        deadline = time.monotonic() + START_TIMEOUT
        while not await readyz():
            assert time.monotonic() < deadline, "/readyz never became 200"
            await asyncio.sleep(0.05)
