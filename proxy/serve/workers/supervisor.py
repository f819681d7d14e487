"""``serve --workers N``: the supervisor that starts, watches, signals and replaces N workers.

docs/commands.md (``serve --workers N``: N processes share the port; SIGHUP and
SIGTERM behave as for one process). The admin listener is the control plane's
(``proxy.serve.workers.control``); what one worker does is ``proxy.serve.workers.worker``.

- **One listening socket.** The supervisor binds and listens on ``[server] listen`` itself
  (``proxy.serve.server.bind_socket``; SO_REUSEPORT set, so another server may still join the port)
  and every worker inherits that socket. It never accepts on it: holding it open is what keeps
  the queue of connections not yet accepted alive when a worker dies, so only the requests the
  dead worker had already accepted can fail.
- **Workers are fresh interpreters, not forks.** prometheus-client decides at import time
  whether values live in memory or in per-process files under ``PROMETHEUS_MULTIPROC_DIR``;
  the supervisor imported it long before ``--workers`` was parsed, so a forked child would keep
  in-memory values. Each worker is ``python -c ...`` with the variable set in its environment.
- **SIGTERM / SIGINT** go to every worker; each stops accepting and drains within
  ``[server] drain_timeout``; the supervisor drops its copy of the listening socket at once
  (the port closes when the last worker has stopped accepting) and exits 0 once all have
  exited 0. A worker still running ``KILL_GRACE`` after the drain timeout is killed.
- **A worker that dies** (a crash, the OOM killer) is replaced at once by the **standby**, a
  process that has imported everything and waits to be told which worker it replaces (it
  serves within milliseconds, where a fresh interpreter needs seconds on a busy host); a new
  standby then starts in the background. A worker that dies within
  ``YOUNG`` seconds of starting is replaced after a growing delay (up to ``MAX_BACKOFF``) so a
  broken host does not spin. Its live-gauge files are removed (``mark_process_dead``); its
  counters stay, so sums never go backwards.
- **New workers start from the supervisor's last valid config** (a snapshot of the file's
  bytes in the run directory, 0700), not from whatever the file holds at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp

from proxy import config as config_mod
from proxy.config import Config, Listen
from proxy.errors import ConfigError
from proxy.serve import eventloop
from proxy.serve.rundirs import make_run_dir
from proxy.serve.workers.control import ControlPlane
from proxy.serve.workers.process import Worker, describe_exit, spawn, worker_session
from proxy.tasks import TaskSet

log = logging.getLogger("oneroster_proxy")

POLL_INTERVAL = 0.1  # how often the supervisor looks for exited workers
PROBE_INTERVAL = 0.05  # how often a starting worker's socket is tried
YOUNG = 5.0  # a worker that dies sooner than this after starting is restarted with backoff
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
KILL_GRACE = 5.0  # beyond drain_timeout, before a worker that will not stop is killed
STANDBY_RETRY = 5.0  # a standby that died young is started again after this
#: The run folder (config snapshot, admin sockets, metrics), named for the supervisor.
RUN_PREFIX = "oneroster-proxy-run-"


def serve_workers(config_path: str, config: Config, workers: int) -> int:
    """Run a supervisor and ``workers`` worker processes until SIGTERM; the exit code."""
    return Supervisor(config_path, config, workers, log_format=_log_format()).run()


class Supervisor:
    def __init__(
        self, config_path: str, config: Config, workers: int, *, log_format: str = "json"
    ) -> None:
        if workers < 1:
            raise ConfigError([f"--workers: must be at least 1, not {workers}"])
        self.config_path = config_path
        self.config = config
        self.count = workers
        self.log_format = log_format
        self.workers: dict[int, Worker] = {}
        self.gateway_port = 0
        self.stopping = False
        self.control = ControlPlane(self)
        self._run_dir = ""
        self._listener: socket.socket | None = None
        self._backoff: dict[int, float] = {}
        self._respawn_at: dict[int, float] = {}
        self.standby: Worker | None = None
        self._standby_at = 0.0  # when to start a standby (none while one runs)
        self._tasks = TaskSet()

    @property
    def metrics_dir(self) -> str:
        return os.path.join(self._run_dir, "metrics")

    @property
    def _snapshot(self) -> str:
        return os.path.join(self._run_dir, "config.toml")

    def run(self) -> int:
        text, self.config = self.read_config()
        # mkdtemp makes the directory 0700: the workers' admin sockets and the config snapshot
        # in it are this user's only.
        # A supervisor killed by SIGKILL leaves its folder; the next start removes it.
        self._run_dir = make_run_dir(RUN_PREFIX)
        try:
            os.mkdir(self.metrics_dir)
            self._write_snapshot(text)
            return eventloop.run(self._main())
        finally:
            shutil.rmtree(self._run_dir, ignore_errors=True)

    async def _main(self) -> int:
        from proxy.serve.server import bind_socket

        loop = asyncio.get_running_loop()
        listen = self.config.server.listen
        try:
            self._listener = bind_socket(listen, reuse_port=True)
        except OSError as exc:
            raise ConfigError(
                [f"server.listen: cannot listen on {listen} ({exc.strerror})"]
            ) from exc
        self.gateway_port = self._listener.getsockname()[1]
        stop = asyncio.Event()
        try:
            await self.control.start(self.config)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(
                signal.SIGHUP, lambda: self._background(self.control.on_sighup())
            )
            for index in range(self.count):
                self._start_worker(index)
            log.info(
                "oneroster-proxy listening",
                extra={
                    "fields": {
                        "gateway": str(Listen(listen.host, self.gateway_port)),
                        "admin": str(
                            Listen(self.config.admin.listen.host, self.control.admin_port)
                        ),
                        "workers": self.count,
                        "supervisor_pid": os.getpid(),
                        "connections": len(self.config.connections),
                    }
                },
            )
            monitor = loop.create_task(self._monitor())
            await stop.wait()
            self.stopping = True
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            code = await self._stop_workers()
            for task in self._tasks:
                task.cancel()
            await self.control.stop()
            log.info("stopped", extra={"fields": {"exit_code": code}})
            return code
        finally:
            spares = [self.standby] if self.standby is not None else []
            for worker in [*self.workers.values(), *spares]:  # reached this way on an error
                if worker.running():
                    worker.process.kill()
                    worker.process.wait()
            self._close_listener()

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- config (the control plane's Fleet) -------------------------------------------------

    def read_config(self) -> tuple[bytes, Config]:
        """The file's bytes and their validation; ConfigError like ``config.load``."""
        text = config_mod.read_file(self.config_path)
        return text, config_mod.loads(text, source=self.config_path)

    def remember(self, text: bytes, config: Config) -> None:
        """A reload succeeded: workers started from now on get this config."""
        self.config = config
        self._write_snapshot(text)

    def _write_snapshot(self, text: bytes) -> None:
        # Written whole then renamed: a worker starting at this moment reads the old or the new.
        partial = self._snapshot + ".partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
        os.replace(partial, self._snapshot)

    # -- workers ------------------------------------------------------------------------------

    def _start_worker(self, index: int) -> Worker:
        worker = self._spawn(index, self._socket_path(index), standby=False)
        self.workers[index] = worker
        log.info("worker started", extra={"fields": {"worker": index, "pid": worker.pid}})
        worker.probe = self._background(self._probe(worker))
        return worker

    def _socket_path(self, index: int) -> str:
        return os.path.join(self._run_dir, f"w{index}.sock")

    def _start_standby(self) -> None:
        self.standby = self._spawn(-1, "", standby=True)
        log.info("standby worker started", extra={"fields": {"pid": self.standby.pid}})

    def _spawn(self, index: int, socket_path: str, *, standby: bool) -> Worker:
        assert self._listener is not None
        spec = {
            "config": self.config_path,
            "snapshot": self._snapshot,
            "admin_socket": socket_path,
            "log_format": self.log_format,
            "supervisor": os.getpid(),
            "index": index,
        }
        return spawn(spec, self._listener.fileno(), self.metrics_dir, standby=standby)

    def _take_standby(self, index: int) -> bool:
        """Put the standby in the place of worker ``index``; False if there is none."""
        spare, self.standby = self.standby, None
        if spare is None or not spare.running() or spare.process.stdin is None:
            return False
        if not spare.activate(index, self._socket_path(index)):
            return False
        self.workers[index] = spare
        log.info("standby worker takes over", extra={"fields": {"worker": index, "pid": spare.pid}})
        spare.probe = self._background(self._probe(spare))
        return True

    async def _probe(self, worker: Worker) -> None:
        """Wait until the worker's admin socket answers; then it accepts on the gateway socket
        too (``server.start`` starts the gateway first) and has its signal handlers."""
        while not self.stopping and worker.running():
            try:
                async with (
                    worker_session(worker) as session,
                    session.get(
                        "http://worker/healthz", timeout=aiohttp.ClientTimeout(total=1)
                    ) as resp,
                ):
                    if resp.status == 200:
                        break
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(PROBE_INTERVAL)
        else:
            return
        worker.ready = True
        log.info(
            "worker ready",
            extra={
                "fields": {
                    "worker": worker.index,
                    "pid": worker.pid,
                    "admin_socket": worker.socket_path,
                    "started_s": round(time.monotonic() - worker.started, 3),
                }
            },
        )
        if worker.pending_hup:
            worker.pending_hup = False
            worker.send(signal.SIGHUP)

    async def _monitor(self) -> None:
        while True:
            now = time.monotonic()
            for worker in list(self.workers.values()):
                code = worker.process.poll()
                if code is not None:
                    self._replace(worker, code, now)
            for index, at in list(self._respawn_at.items()):
                if now >= at:
                    del self._respawn_at[index]
                    self._start_worker(index)
            spare = self.standby
            if spare is not None and not spare.running():
                # A standby that dies at once (a broken install) is not restarted in a loop.
                self.standby = None
                lived = now - spare.started
                self._standby_at = now + (STANDBY_RETRY if lived < YOUNG else 0.0)
                log.error(
                    "standby worker exited",
                    extra={
                        "fields": {
                            "pid": spare.pid,
                            "exit": describe_exit(spare.process.returncode),
                        }
                    },
                )
            if self.standby is None and now >= self._standby_at:
                self._start_standby()
            await asyncio.sleep(POLL_INTERVAL)

    def _replace(self, worker: Worker, code: int, now: float) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        del self.workers[worker.index]
        if worker.probe is not None:
            worker.probe.cancel()
        mark_process_dead(worker.pid, self.metrics_dir)
        lived = now - worker.started
        previous = self._backoff.get(worker.index, 0.0)
        if lived < YOUNG:
            delay = min(max(previous * 2, FIRST_BACKOFF), MAX_BACKOFF)
        else:
            delay = 0.0
        self._backoff[worker.index] = delay
        # The standby takes over at once unless this slot is crash-looping (a young death
        # after another young death): then it waits out its backoff.
        if delay > 0 and previous > 0:
            self._respawn_at[worker.index] = now + delay
        elif self._take_standby(worker.index):
            delay = 0.0
        else:
            self._respawn_at[worker.index] = now + delay
        log.error(
            "worker exited; replacing it",
            extra={
                "fields": {
                    "worker": worker.index,
                    "pid": worker.pid,
                    "exit": describe_exit(code),
                    "lived_s": round(lived, 2),
                    "restart_in_s": delay,
                }
            },
        )

    async def _stop_workers(self) -> int:
        from prometheus_client.multiprocess import mark_process_dead

        drain = self.control.drain_timeout()
        log.info(
            "draining", extra={"fields": {"workers": len(self.workers), "drain_timeout": drain}}
        )
        spare, self.standby = self.standby, None
        if spare is not None and spare.process.stdin is not None:
            spare.process.stdin.close()  # EOF: a standby that is not needed exits 0
        for worker in self.workers.values():
            worker.send(signal.SIGTERM)
        # The workers hold the socket now; once each has stopped accepting, the port closes
        # and new connections are refused, as with one process.
        self._close_listener()
        deadline = time.monotonic() + drain + KILL_GRACE
        # Polled: a process exit has no event to await without a child watcher of our own.
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            w.running() for w in self.workers.values()
        ):
            await asyncio.sleep(0.05)
        code = 0
        for worker in self.workers.values():
            if worker.running():
                log.error(
                    "worker did not stop within the drain timeout; killing it",
                    extra={"fields": {"worker": worker.index, "pid": worker.pid}},
                )
                worker.process.kill()
            status = await asyncio.to_thread(worker.process.wait)
            mark_process_dead(worker.pid, self.metrics_dir)
            # A worker still starting when SIGTERM came dies of it: that is a clean stop too.
            if status not in (0, -signal.SIGTERM):
                code = 1
                log.error(
                    "worker ended badly",
                    extra={
                        "fields": {
                            "worker": worker.index,
                            "pid": worker.pid,
                            "exit": describe_exit(status),
                        }
                    },
                )
        self.workers.clear()
        if spare is not None:
            try:
                await asyncio.to_thread(spare.process.wait, KILL_GRACE)
            except subprocess.TimeoutExpired:
                spare.process.kill()
                await asyncio.to_thread(spare.process.wait)
        return code

    def _background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)


def _log_format() -> str:
    from proxy.logs import TextFormatter

    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, TextFormatter):
            return "text"
    return "json"
