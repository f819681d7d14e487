"""One worker of ``serve --workers N``: a fresh interpreter started by the supervisor.

docs/commands.md (``serve --workers N``; SIGHUP and SIGTERM behave as for one
process). A worker runs ``proxy.serve.server.serve`` exactly as a single process does, on

- **the supervisor's listening socket**, inherited as a file descriptor. Every worker accepts
  from that one socket, so a connection the kernel has queued but no worker has accepted yet
  survives the death of any worker: the socket stays open in the supervisor and the others.
  (With one SO_REUSEPORT socket per worker, the kernel drops the backlog of the socket that a
  dead worker leaves behind: those clients see a reset.)
- **a private Unix socket** in the supervisor's run directory for its own admin app, which
  the supervisor uses to see that the worker is up and to pass ``POST /admin/reload`` on.

A **standby** (one per supervisor) imports everything, then waits on its standard input until
the supervisor sends it the place of a worker that died: it serves within milliseconds rather
than after a fresh interpreter's start-up, which takes seconds on a loaded host.

A worker loads the supervisor's last valid config (a snapshot of the file's text), with the real
file as its source, so SIGHUP and ``/admin/reload`` read the file itself again. A worker whose
supervisor disappears (SIGKILL) notices it was re-parented and drains as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from proxy import config as config_mod
from proxy.config import Config
from proxy.errors import ConfigError
from proxy.serve import eventloop
from proxy.serve.workers.process import MULTIPROC_ENV

log = logging.getLogger("oneroster_proxy")

ORPHAN_CHECK = 1.0  # how often a worker checks that its supervisor is still there


def worker_main(argv: list[str] | None = None) -> None:
    """Entry point of a worker process (started by the supervisor, never by hand)."""
    # Until serve() installs its handler, SIGHUP's default action would end the process; the
    # supervisor holds reloads back until a worker answers, by which time the handler is in.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else argv
    sys.exit(_run_worker(json.loads(args[0])))


def _run_worker(spec: dict[str, Any]) -> int:
    from proxy.logs import setup_logging

    setup_logging(spec["log_format"])
    if not os.environ.get(MULTIPROC_ENV):
        log.error("a worker needs %s (it is started by serve --workers)", MULTIPROC_ENV)
        return 2
    if spec.get("standby"):
        _warm_up()
        # Blocks until the supervisor needs this process in place of a dead worker; EOF (the
        # supervisor is gone, or stops without needing it) ends it.
        line = sys.stdin.buffer.readline()
        if not line:
            return 0
        spec = {**spec, **json.loads(line)}
    try:
        # source: the real file, so SIGHUP and /admin/reload read it again. A standby reads
        # it only now: the snapshot may have changed while it waited.
        text = config_mod.read_file(spec["snapshot"])
        config = config_mod.loads(text, source=spec["config"])
    except ConfigError as exc:
        log.error("worker cannot load its config: %s", exc)
        return 2
    gateway_sock = socket.socket(fileno=spec["gateway_fd"])
    gateway_sock.setblocking(False)
    admin_sock = _unix_listener(spec["admin_socket"])
    try:
        return eventloop.run(_serve_worker(config, gateway_sock, admin_sock, spec["supervisor"]))
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group before serve() began
        return 0


def _warm_up() -> None:
    """Import what serving needs, so that a standby takes over in milliseconds: starting a
    fresh interpreter and importing aiohttp, redis-py, cryptography and the proxy takes
    seconds on a busy host."""
    from proxy.store import redis, sqlite  # noqa: F401


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
    from proxy.serve.server import serve

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
