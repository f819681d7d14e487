"""One worker process as the supervisor sees it, and the way to talk to it (its private admin
socket). Shared by the supervisor (``proxy.serve.workers.supervisor``) and the control plane
(``proxy.serve.workers.control``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# prometheus-client keeps values in per-process files under this directory when it is set
# before the import: the workers' environment has it, the supervisor reads the files.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BOOT = "from proxy.serve.workers.worker import worker_main; worker_main()"


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    socket_path: str
    started: float
    ready: bool = False
    pending_hup: bool = False
    probe: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def activate(self, index: int, socket_path: str) -> bool:
        """A standby takes the place of worker ``index``: it is told so on its stdin (then
        closed); False if it can no longer be told."""
        stdin = self.process.stdin
        if stdin is None or not self.running():
            return False
        self.index, self.socket_path, self.started = index, socket_path, time.monotonic()
        try:
            stdin.write((json.dumps({"index": index, "admin_socket": socket_path}) + "\n").encode())
            stdin.close()
        except OSError:
            return False
        return True

    def send(self, sig: signal.Signals) -> None:
        # Popen.send_signal does nothing once the process has been reaped, so a recycled pid
        # is never signalled.
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)


def spawn(spec: dict[str, Any], listener_fd: int, metrics_dir: str, *, standby: bool) -> Worker:
    """Start ``python -c BOOT`` with ``spec`` (JSON), the gateway socket inherited as
    ``listener_fd`` and prometheus-client's multiprocess directory in its environment. A
    standby gets a pipe on its stdin, to be told later which worker it replaces."""
    spec = {**spec, "gateway_fd": listener_fd, "standby": standby}
    env = dict(os.environ)
    env[MULTIPROC_ENV] = metrics_dir
    # The worker imports this very package, wherever it was imported from here.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-c", BOOT, json.dumps(spec)],
        stdin=subprocess.PIPE if standby else subprocess.DEVNULL,
        env=env,
        pass_fds=(listener_fd,),
        # A process group of its own: a terminal's Ctrl-C (SIGINT to the foreground group)
        # reaches the supervisor only, which drains every worker with SIGTERM; a worker (a
        # standby waiting on its stdin above all) never dies of it with a traceback.
        process_group=0,
    )
    return Worker(spec["index"], process, spec["admin_socket"], started=time.monotonic())


@contextlib.asynccontextmanager
async def worker_session(worker: Worker) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the worker's own admin app on its Unix socket."""
    async with aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=worker.socket_path)
    ) as session:
        yield session


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"
