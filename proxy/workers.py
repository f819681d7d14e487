"""``serve --workers N``: one supervisor, N worker processes sharing the gateway port.

SPEC.md "Install and commands" (``serve --workers N``: N processes share the port with
SO_REUSEPORT; SIGHUP and SIGTERM behave as for one process) and "Metrics" (with ``--workers N``
one ``/metrics`` shows the sum over all workers).

How the pieces fit:

- **Gateway port.** The supervisor binds the gateway address with SO_REUSEPORT and never
  listens on it: that resolves port 0 once and keeps the port reserved, so a worker started
  later (a replacement) joins the same port. Each worker binds the same address with
  SO_REUSEPORT and runs ``proxy.server.serve``; the kernel spreads new connections over the
  listening workers.
- **Workers are fresh interpreters, not forks.** prometheus-client decides at import time
  whether values live in memory or in per-process files under ``PROMETHEUS_MULTIPROC_DIR``;
  the supervisor imported it long before ``--workers`` was parsed, so a forked child would keep
  in-memory values. Each worker is ``python -c ...`` with the variable set in its environment.
- **Admin listener: the supervisor alone.** It runs a gateway app of its own that never
  listens (same store, same config), and serves ``[admin] listen`` from it, so ``/admin/*``
  behaves as in one process. ``/metrics`` renders every worker's files with
  ``MultiProcessCollector`` (counters and histograms summed, ``inflight`` summed over live
  workers) plus the supervisor's own ``tokens_active``, which it reads from the store at scrape
  time. ``/readyz`` is 503 until every worker answers. Circuit state in ``/admin/connections``
  is the supervisor's; each worker keeps its own breaker, visible as ``circuit_open`` (max).
- **Each worker also serves the admin app on a private Unix socket** in the supervisor's run
  directory (mode 0700, deleted at exit). The supervisor uses it to see that a worker is up
  and to pass ``POST /admin/reload`` on; it shows that worker's own ``/metrics`` too.
- **Reload.** SIGHUP to the supervisor: it validates the file for its own admin app, then
  sends SIGHUP to every worker, and each worker validates and swaps on its own exactly as one
  process does (a worker still starting gets the signal once it answers). ``POST
  /admin/reload`` on the admin listener: the supervisor reloads, then posts the same request
  to every worker and answers with every worker's result. Each worker counts its reload in
  ``config_reloads_total`` (so ``/metrics`` shows N per reload, the sum over workers) and
  records it in the audit trail.
- **SIGTERM / SIGINT** go to every worker; each stops accepting and drains within
  ``[server] drain_timeout``; the supervisor exits 0 once all have exited 0. A worker still
  running ``KILL_GRACE`` after the drain timeout is killed.
- **A worker that dies** (a crash, the OOM killer) is replaced at once; one that dies within
  ``YOUNG`` seconds of starting is replaced after a growing delay (up to ``MAX_BACKOFF``) so a
  broken host does not spin. Its live-gauge files are removed (``mark_process_dead``); its
  counters stay, so sums never go backwards.
- **New workers start from the supervisor's last valid config** (a snapshot of the file's
  text in the run directory), not from whatever the file holds at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from . import config as config_mod
from . import eventloop
from .config import Config, Listen
from .errors import ConfigError

log = logging.getLogger("oneroster_proxy")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Families the supervisor renders from its own registry rather than from the workers' files:
# ``tokens_active`` is read from the store by whichever process serves the scrape, and a stale
# value left in a worker's file would win a ``max``.
SUPERVISOR_FAMILIES = frozenset(
    {
        "oneroster_proxy_tokens_active",
        "oneroster_proxy_check_ok",
        "oneroster_proxy_check_timestamp_seconds",
        "oneroster_proxy_check_failed_twice",
    }
)
POLL_INTERVAL = 0.1  # how often the supervisor looks for exited workers
PROBE_INTERVAL = 0.05  # how often a starting worker's socket is tried
YOUNG = 5.0  # a worker that dies sooner than this after starting is restarted with backoff
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
KILL_GRACE = 5.0  # beyond drain_timeout, before a worker that will not stop is killed
ORPHAN_CHECK = 1.0  # how often a worker checks that its supervisor is still there
_WORKER_BOOT = "from proxy.workers import worker_main; worker_main()"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def serve_workers(config_path: str, config: Config, workers: int) -> int:
    """Run a supervisor and ``workers`` worker processes until SIGTERM; the exit code."""
    return Supervisor(config_path, config, workers, log_format=_log_format()).run()


# -- the supervisor ---------------------------------------------------------------------------


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


class Supervisor:
    """Starts, watches, signals and replaces the workers; serves the admin listener."""

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
        self.admin_port = 0
        self.stopping = False
        self._run_dir = ""
        self._backoff: dict[int, float] = {}
        self._respawn_at: dict[int, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gateway: web.Application | None = None

    @property
    def metrics_dir(self) -> str:
        return os.path.join(self._run_dir, "metrics")

    @property
    def _snapshot(self) -> str:
        return os.path.join(self._run_dir, "config.toml")

    def run(self) -> int:
        text, self.config = self._read_config()
        # mkdtemp makes the directory 0700: the workers' admin sockets and the config snapshot
        # in it are this user's only.
        self._run_dir = tempfile.mkdtemp(prefix="oneroster-proxy-")
        try:
            os.mkdir(self.metrics_dir)
            self._write_snapshot(text)
            return eventloop.run(self._main())
        finally:
            shutil.rmtree(self._run_dir, ignore_errors=True)

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        reserved = _reserve_port(self.config.server.listen)
        self.gateway_port = reserved.getsockname()[1]
        stop = asyncio.Event()
        try:
            gateway_runner, admin_runner = await self._start_control()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: self._background(self._on_sighup()))
            for index in range(self.count):
                self._start_worker(index)
            listen = self.config.server.listen
            log.info(
                "oneroster-proxy listening",
                extra={
                    "fields": {
                        "gateway": str(Listen(listen.host, self.gateway_port)),
                        "admin": str(Listen(self.config.admin.listen.host, self.admin_port)),
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
            for task in list(self._tasks):
                task.cancel()
            await admin_runner.cleanup()
            await gateway_runner.cleanup()
            log.info("stopped", extra={"fields": {"exit_code": code}})
            return code
        finally:
            for worker in self.workers.values():  # only reached this way on an error
                if worker.running():
                    worker.process.kill()
                    worker.process.wait()
            reserved.close()

    # -- config ---------------------------------------------------------------------------

    def _read_config(self) -> tuple[bytes, Config]:
        """The file's text and its validation; ConfigError like ``config.load``."""
        try:
            text = Path(self.config_path).read_bytes()
            raw = tomllib.loads(text.decode())
        except FileNotFoundError as exc:
            raise ConfigError([f"{self.config_path}: no such file"]) from exc
        except OSError as exc:
            raise ConfigError([f"{self.config_path}: cannot read ({exc.strerror})"]) from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError([f"{self.config_path}: invalid TOML: {exc}"]) from exc
        return text, config_mod.validate(raw, source=self.config_path)

    def _write_snapshot(self, text: bytes) -> None:
        # Written whole then renamed: a worker starting at this moment reads the old or the new.
        partial = self._snapshot + ".partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
        os.replace(partial, self._snapshot)

    def _remember(self) -> None:
        """After the supervisor's admin app reloaded the file: new workers start from it."""
        try:
            text, config = self._read_config()
        except ConfigError:
            return  # changed again since; the next reload settles it
        self.config = config
        self._write_snapshot(text)

    async def _on_sighup(self) -> None:
        from .reload import swap_runtime

        try:
            text, config = await asyncio.to_thread(self._read_config)
        except ConfigError as err:
            log.error(
                "config reload refused by the supervisor; the workers will refuse it too",
                extra={
                    "fields": {
                        "event": "config.reload",
                        "interface": "signal",
                        "result": "error",
                        "problems": err.problems,
                    }
                },
            )
        else:
            assert self._gateway is not None
            swap_runtime(self._gateway, config)
            self.config = config
            self._write_snapshot(text)
        # Forwarded either way: each worker validates, counts and logs its own result.
        for worker in self.workers.values():
            if worker.ready:
                worker.send(signal.SIGHUP)
            else:
                worker.pending_hup = True

    # -- the admin listener ---------------------------------------------------------------

    async def _start_control(self) -> tuple[web.AppRunner, web.AppRunner]:
        from .admin import create_admin_app
        from .app import create_app
        from .server import bind_socket
        from .store import open_store

        gateway = create_app(self.config, open_store(self.config.store.url))
        self._gateway = gateway
        # Set up (store opened, upstream session made, for /admin/*) but never given a site.
        gateway_runner = web.AppRunner(gateway, access_log=None, handle_signals=False)
        await gateway_runner.setup()
        admin = create_admin_app(gateway, metrics_text=self._metrics_text)
        admin.middlewares.append(self._admin_middleware)
        admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False)
        await admin_runner.setup()
        try:
            sock = bind_socket(self.config.admin.listen)
        except OSError as exc:
            await admin_runner.cleanup()
            await gateway_runner.cleanup()
            raise ConfigError(
                [f"admin.listen: cannot listen on {self.config.admin.listen} ({exc.strerror})"]
            ) from exc
        await web.SockSite(admin_runner, sock).start()
        self.admin_port = sock.getsockname()[1]
        return gateway_runner, admin_runner

    def _metrics_text(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        from .context import SERVICES

        assert self._gateway is not None
        own = self._gateway[SERVICES].metrics
        registry = CollectorRegistry(auto_describe=False)
        families = [own.tokens_active, own.check_ok, own.check_timestamp, own.check_failed_twice]
        registry.register(WorkerMetrics(self.metrics_dir, own=families))
        return generate_latest(registry)

    @web.middleware
    async def _admin_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Runs inside the admin app's own middleware, so /admin/* is already authorised here.
        if request.path == "/readyz":
            response = await handler(request)
            if response.status != 200:
                return response
            waiting = self._not_ready()
            if waiting is not None:
                return web.json_response({"status": "unavailable", "workers": waiting}, status=503)
            return response
        if request.path == "/admin/reload" and request.method == "POST":
            response = await handler(request)
            return await self._reload_workers(request, response)
        return await handler(request)

    def _not_ready(self) -> str | None:
        if self.stopping:
            return "draining"
        ready = sum(1 for w in self.workers.values() if w.ready and w.running())
        return None if ready == self.count else f"{ready}/{self.count} ready"

    async def _reload_workers(
        self, request: web.Request, response: web.StreamResponse
    ) -> web.StreamResponse:
        if not isinstance(response, web.Response) or response.body is None:
            return response
        try:
            body = json.loads(bytes(response.body))  # type: ignore[arg-type]
        except ValueError:
            return response
        if response.status == 200:
            await asyncio.to_thread(self._remember)
        # The caller's own credentials: they were checked against the config the workers
        # still run, whatever the new one says about [admin] token.
        authorization = request.headers.get("Authorization", "")
        ready = [w for w in self.workers.values() if w.ready and w.running()]
        for worker in self.workers.values():
            if worker not in ready:
                worker.pending_hup = True
        results = list(await asyncio.gather(*(self._post_reload(w, authorization) for w in ready)))
        results += [
            {"pid": w.pid, "status": "starting"} for w in self.workers.values() if w not in ready
        ]
        body["workers"] = results
        body["ok"] = bool(body.get("ok")) and all(r.get("ok", True) for r in results)
        return web.json_response(body, status=response.status)

    async def _post_reload(self, worker: Worker, authorization: str) -> dict[str, Any]:
        try:
            async with (
                _worker_session(worker) as session,
                session.post(
                    "http://worker/admin/reload",
                    headers={"Authorization": authorization},
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as resp,
            ):
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return {"pid": worker.pid, "ok": False, "error": f"worker did not answer: {exc!r}"}
        result: dict[str, Any] = {
            "pid": worker.pid,
            "ok": resp.status == 200 and bool(isinstance(data, dict) and data.get("ok")),
        }
        if isinstance(data, dict) and data.get("errors"):
            result["errors"] = data["errors"]
        return result

    # -- workers --------------------------------------------------------------------------

    def _start_worker(self, index: int) -> Worker:
        socket_path = os.path.join(self._run_dir, f"w{index}.sock")
        spec = {
            "config": self.config_path,
            "snapshot": self._snapshot,
            "host": self.config.server.listen.host,
            "port": self.gateway_port,
            "admin_socket": socket_path,
            "log_format": self.log_format,
            "supervisor": os.getpid(),
            "index": index,
        }
        env = dict(os.environ)
        env[MULTIPROC_ENV] = self.metrics_dir
        # The worker imports this very package, wherever it was imported from here.
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        worker = Worker(index, process, socket_path, started=time.monotonic())
        self.workers[index] = worker
        log.info("worker started", extra={"fields": {"worker": index, "pid": process.pid}})
        worker.probe = self._background(self._probe(worker))
        return worker

    async def _probe(self, worker: Worker) -> None:
        """Wait until the worker's admin socket answers; then it listens on the gateway too
        (``server.start`` opens the gateway first) and has its signal handlers."""
        while not self.stopping and worker.running():
            try:
                async with (
                    _worker_session(worker) as session,
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
            await asyncio.sleep(POLL_INTERVAL)

    def _replace(self, worker: Worker, code: int, now: float) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        del self.workers[worker.index]
        if worker.probe is not None:
            worker.probe.cancel()
        mark_process_dead(worker.pid, self.metrics_dir)
        lived = now - worker.started
        if lived < YOUNG:
            delay = min(max(self._backoff.get(worker.index, 0.0) * 2, FIRST_BACKOFF), MAX_BACKOFF)
        else:
            delay = 0.0
        self._backoff[worker.index] = delay
        self._respawn_at[worker.index] = now + delay
        log.error(
            "worker exited; replacing it",
            extra={
                "fields": {
                    "worker": worker.index,
                    "pid": worker.pid,
                    "exit": _describe_exit(code),
                    "lived_s": round(lived, 2),
                    "restart_in_s": delay,
                }
            },
        )

    async def _stop_workers(self) -> int:
        from prometheus_client.multiprocess import mark_process_dead

        assert self._gateway is not None
        from .context import SERVICES

        drain = self._gateway[SERVICES].runtime.current.config.server.drain_timeout
        log.info(
            "draining", extra={"fields": {"workers": len(self.workers), "drain_timeout": drain}}
        )
        for worker in self.workers.values():
            worker.send(signal.SIGTERM)
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
                            "exit": _describe_exit(status),
                        }
                    },
                )
        self.workers.clear()
        return code

    def _background(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # held until done: a task nobody references can be collected
        task.add_done_callback(self._tasks.discard)
        return task


class WorkerMetrics:
    """Every worker's metric files merged, plus some families from the supervisor's own
    registry instead (``SUPERVISOR_FAMILIES``)."""

    def __init__(self, path: str, own: Iterable[Any] = ()) -> None:
        self.path = path
        self.own = list(own)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        for family in MultiProcessCollector(None, path=self.path).collect():
            if family.name not in SUPERVISOR_FAMILIES:
                yield family
        for collector in self.own:
            yield from collector.collect()


@contextlib.asynccontextmanager
async def _worker_session(worker: Worker) -> Any:
    async with aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=worker.socket_path)
    ) as session:
        yield session


def _reserve_port(listen: Listen) -> socket.socket:
    """Bound with SO_REUSEPORT and never listening: no connection is ever queued on it."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise ConfigError([f"server.listen: cannot listen on {listen} ({exc.strerror})"]) from exc
    return sock


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _log_format() -> str:
    from .logs import TextFormatter

    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, TextFormatter):
            return "text"
    return "json"


# -- a worker ---------------------------------------------------------------------------------


def worker_main(argv: list[str] | None = None) -> None:
    """Entry point of a worker process (started by the supervisor, never by hand)."""
    # Until serve() installs its handler, SIGHUP's default action would end the process; the
    # supervisor holds reloads back until a worker answers, by which time the handler is in.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else argv
    sys.exit(_run_worker(json.loads(args[0])))


def _run_worker(spec: dict[str, Any]) -> int:
    from .logs import setup_logging
    from .server import bind_socket

    setup_logging(spec["log_format"])
    if not os.environ.get(MULTIPROC_ENV):
        log.error("a worker needs %s (it is started by serve --workers)", MULTIPROC_ENV)
        return 2
    try:
        with open(spec["snapshot"], "rb") as fh:
            raw = tomllib.load(fh)
        # source: the real file, so SIGHUP and /admin/reload read it again.
        config = config_mod.validate(raw, source=spec["config"])
    except (OSError, tomllib.TOMLDecodeError, ConfigError) as exc:
        log.error("worker cannot load its config: %s", exc)
        return 2
    gateway_sock = bind_socket(Listen(spec["host"], spec["port"]), reuse_port=True)
    admin_sock = _unix_listener(spec["admin_socket"])
    try:
        return eventloop.run(_serve_worker(config, gateway_sock, admin_sock, spec["supervisor"]))
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group before serve() began
        return 0


def _unix_listener(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by the worker this one replaces
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


async def _serve_worker(
    config: Config, gateway_sock: socket.socket, admin_sock: socket.socket, supervisor: int
) -> int:
    from .server import serve

    watchdog = asyncio.get_running_loop().create_task(_orphan_watch(supervisor))
    try:
        return await serve(config, gateway_sock=gateway_sock, admin_sock=admin_sock)
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


async def _orphan_watch(supervisor: int) -> None:
    """A supervisor killed outright (SIGKILL) cannot stop its workers: they notice they were
    re-parented and drain as on SIGTERM, so the port is not held by orphans."""
    # Re-parenting sends no signal: it must be polled.
    while os.getppid() == supervisor:  # noqa: ASYNC110
        await asyncio.sleep(ORPHAN_CHECK)
    log.warning("supervisor %d is gone; stopping this worker", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["Supervisor", "WorkerMetrics", "serve_workers", "worker_main"]
