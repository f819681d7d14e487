"""Running the proxy: the gateway and admin listeners, SIGHUP reload, SIGTERM drain.

docs/commands.md ``serve``: SIGTERM stops accepting, lets in-flight requests (long streams included)
finish within ``[server] drain_timeout``, cuts whatever still runs then, closes upstream
sessions and exits 0. While the gateway drains, the admin listener stays up with ``/readyz``
answering 503, so probes and scrapes see the drain rather than a refused connection.

SIGHUP (like ``POST /admin/reload``) runs ``proxy.gateway.reload.reload_config``: a valid config
file is swapped in atomically, an invalid one is logged and the old one kept.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass

from aiohttp import web

from proxy.admin.listener import STATE, create_admin_app
from proxy.app import create_app
from proxy.config import Config, Listen
from proxy.errors import ConfigError
from proxy.gateway.context import SERVICES
from proxy.gateway.inbound_limits import GuardedAppRunner
from proxy.gateway.reload import RELOAD_LOCK, reload_config
from proxy.logs import flush_access_log
from proxy.serve.eventloop import loop_name
from proxy.store import open_store
from proxy.tasks import TaskSet

log = logging.getLogger("oneroster_proxy")


def bind_socket(listen: Listen, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((listen.host, listen.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _listen(listen: Listen, key: str) -> socket.socket:
    """``bind_socket`` for ``serve``: a port in use is one line naming the key, not a traceback
    (as the ``--workers`` supervisor words it)."""
    try:
        return bind_socket(listen)
    except OSError as exc:
        raise ConfigError([f"{key}: cannot listen on {listen} ({exc.strerror})"]) from exc


@dataclass
class Running:
    gateway: web.Application
    gateway_runner: web.AppRunner
    admin_runner: web.AppRunner | None
    gateway_port: int
    admin_port: int | None
    admin: web.Application | None = None

    async def stop(self, drain_timeout: float) -> None:
        """Drain the gateway for up to ``drain_timeout`` seconds, then close everything."""
        if self.admin is not None:
            self.admin[STATE].draining = True
        # AppRunner.cleanup closes the listening socket first (new connections are refused),
        # closes idle keep-alive connections, waits up to its shutdown_timeout for handlers in
        # flight, cancels the rest, then runs cleanup_ctx (upstream sessions, the store).
        # The runner was built with the drain_timeout of start; a reload may have changed it.
        if hasattr(self.gateway_runner, "_shutdown_timeout"):
            self.gateway_runner._shutdown_timeout = drain_timeout
        await self.gateway_runner.cleanup()
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
        flush_access_log()


async def start(
    config: Config,
    *,
    gateway_sock: socket.socket | None = None,
    admin_sock: socket.socket | None = None,
    metrics_text: object = None,
) -> Running:
    """Start both listeners for ``config`` (sockets may be pre-bound, e.g. by --workers)."""
    store = open_store(config.store.url)
    gateway = create_app(config, store)
    gateway[SERVICES].metrics.set_connections(config)
    gateway[RELOAD_LOCK] = asyncio.Lock()
    runner = GuardedAppRunner(
        gateway,
        client_timeout=config.server.client_timeout,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=config.server.drain_timeout,
        handler_cancellation=True,
    )
    await runner.setup()
    try:
        sock = gateway_sock or _listen(config.server.listen, "server.listen")
    except ConfigError:
        await runner.cleanup()
        raise
    site = web.SockSite(runner, sock)
    await site.start()
    gateway_port = sock.getsockname()[1]

    admin_runner = None
    admin_port = None
    admin = create_admin_app(gateway, metrics_text=metrics_text)  # type: ignore[arg-type]
    admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False)
    await admin_runner.setup()
    try:
        asock = admin_sock or _listen(config.admin.listen, "admin.listen")
    except ConfigError:
        await admin_runner.cleanup()
        await runner.cleanup()
        raise
    await web.SockSite(admin_runner, asock).start()
    # A worker's admin app listens on a Unix socket, whose name is a path, not (host, port).
    name = asock.getsockname()
    admin_port = name[1] if isinstance(name, tuple) else None
    return Running(gateway, runner, admin_runner, gateway_port, admin_port, admin)


async def serve(config: Config, *, ready: asyncio.Event | None = None, **kwargs: object) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code."""
    running = await start(config, **kwargs)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads = TaskSet()

    def on_hup() -> None:
        reloads.spawn(_reload_quietly(running.gateway))

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    log.info(
        "oneroster-proxy listening",
        extra={
            "fields": {
                "gateway": f"{config.server.listen.host}:{running.gateway_port}",
                "admin": _admin_address(config, running, kwargs.get("admin_sock")),
                "connections": len(config.connections),
                "loop": loop_name(),
            }
        },
    )
    for warning in config.warnings:
        log.warning("config warning: %s", warning)
    if ready is not None:
        ready.set()
    await stop.wait()
    services = running.gateway[SERVICES]
    drain = services.runtime.current.config.server.drain_timeout
    log.info("draining", extra={"fields": {"event": "drain", "drain_timeout": drain}})
    started = loop.time()
    await running.stop(drain)
    log.info(
        "stopped",
        extra={"fields": {"event": "stopped", "drained_s": round(loop.time() - started, 3)}},
    )
    return 0


def _admin_address(config: Config, running: Running, sock: object) -> str:
    """Where the admin app listens: ``host:port``, or ``unix:<path>`` for a worker's private
    socket (the supervisor serves ``[admin] listen`` for it)."""
    if running.admin_port is not None:
        return f"{config.admin.listen.host}:{running.admin_port}"
    name = sock.getsockname() if isinstance(sock, socket.socket) else ""
    return f"unix:{name}"


async def _reload_quietly(gateway: web.Application) -> None:
    try:
        await reload_config(gateway, interface="signal")
    except ConfigError:
        pass  # logged and counted by reload_config; the old config stays
