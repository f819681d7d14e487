"""One worker process as the supervisor sees it, and the way to talk to it (its private admin
socket). Shared by the supervisor (``proxy.workers.supervisor``) and the control plane
(``proxy.workers.control``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

# prometheus-client keeps values in per-process files under this directory when it is set
# before the import: the workers' environment has it, the supervisor reads the files.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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

    def send(self, sig: signal.Signals) -> None:
        # Popen.send_signal does nothing once the process has been reaped, so a recycled pid
        # is never signalled.
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)


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
