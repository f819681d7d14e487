"""The supervisor's control plane: the one admin listener of ``serve --workers N``.

docs/http-api.md, docs/metrics.md (with ``--workers N`` one ``/metrics`` shows the sum
over all workers). The supervisor runs a gateway app of its own that never listens (same store,
same config) and serves ``[admin] listen`` from it, so ``/admin/*`` behaves as in one process.

- ``/metrics`` renders every worker's files with ``MultiProcessCollector`` (counters and
  histograms summed, ``inflight`` summed over live workers) plus the families that the
  supervisor reads from the store itself (``SUPERVISOR_FAMILIES``).
- ``/readyz`` is the supervisor's own answer (config loaded, store reachable), and 503 until
  every worker answers, or while draining.
- **Reload.** SIGHUP: validate the file for the supervisor's own app, then SIGHUP every worker;
  each validates and swaps on its own exactly as one process does (a worker still starting
  gets the signal once it answers). ``POST /admin/reload``: the supervisor reloads, then posts
  the same request to every worker and answers with every worker's result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from proxy.activity import Minute, merge, minutes_of
from proxy.config import Config
from proxy.console.core import CONSOLE
from proxy.errors import ConfigError
from proxy.serve.workers.process import Worker, worker_session

log = logging.getLogger("oneroster_proxy")

# Families the supervisor renders from its own registry rather than from the workers' files:
# ``tokens_active`` and the background check results are read from the store by whichever
# process serves the scrape, and a stale value left in a worker's file would win a ``max``.
SUPERVISOR_FAMILIES = frozenset(
    {
        "oneroster_proxy_tokens_active",
        "oneroster_proxy_check_ok",
        "oneroster_proxy_check_timestamp_seconds",
        "oneroster_proxy_check_failed_twice",
    }
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Fleet(Protocol):
    """What the control plane needs of the supervisor."""

    workers: dict[int, Worker]
    count: int
    stopping: bool

    @property
    def metrics_dir(self) -> str: ...

    def read_config(self) -> tuple[bytes, Config]: ...

    def remember(self, text: bytes, config: Config) -> None: ...


class ControlPlane:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.gateway: web.Application | None = None
        self.admin_port = 0
        self._runners: list[web.AppRunner] = []

    async def start(self, config: Config) -> None:
        """Set up the never-listening gateway app and serve the admin listener."""
        from proxy.admin.listener import create_admin_app
        from proxy.app import create_app
        from proxy.serve.server import bind_socket
        from proxy.store import open_store

        gateway = create_app(config, open_store(config.store.url))
        self.gateway = gateway
        # Set up (store opened, upstream session made, for /admin/*) but never given a site.
        gateway_runner = web.AppRunner(gateway, access_log=None, handle_signals=False)
        await gateway_runner.setup()
        self._runners.append(gateway_runner)
        admin = create_admin_app(gateway, metrics_text=self.metrics_text)
        admin.middlewares.append(self._admin_middleware)
        admin[CONSOLE].activity = self.worker_activity
        admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False)
        await admin_runner.setup()
        self._runners.insert(0, admin_runner)
        try:
            sock = bind_socket(config.admin.listen)
        except OSError as exc:
            await self.stop()
            raise ConfigError(
                [f"admin.listen: cannot listen on {config.admin.listen} ({exc.strerror})"]
            ) from exc
        await web.SockSite(admin_runner, sock).start()
        self.admin_port = sock.getsockname()[1]

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def drain_timeout(self) -> float:
        from proxy.gateway.context import SERVICES

        assert self.gateway is not None
        return self.gateway[SERVICES].runtime.current.config.server.drain_timeout

    # -- /metrics ---------------------------------------------------------------------------

    def metrics_text(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        from proxy.gateway.context import SERVICES

        assert self.gateway is not None
        own = self.gateway[SERVICES].metrics
        registry = CollectorRegistry(auto_describe=False)
        families = [own.tokens_active, own.check_ok, own.check_timestamp, own.check_failed_twice]
        registry.register(WorkerMetrics(self.fleet.metrics_dir, own=families))
        return generate_latest(registry)

    # -- the console's last hour --------------------------------------------------------------

    async def worker_activity(self) -> dict[str, list[Minute]]:
        """Every ready worker's last hour per appId, added up, for the console's board."""
        from proxy.gateway.context import SERVICES

        assert self.gateway is not None
        token = self.gateway[SERVICES].runtime.current.config.admin.token or ""
        ready = [w for w in self.fleet.workers.values() if w.ready and w.running()]

        async def one(worker: Worker) -> dict[str, list[Minute]]:
            try:
                async with (
                    worker_session(worker) as session,
                    session.get(
                        "http://worker/admin/activity",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=aiohttp.ClientTimeout(total=5),
                    ) as resp,
                ):
                    data = await resp.json(content_type=None)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                return {}  # a worker restarting: the board shows what the others saw
            apps = data.get("apps") if isinstance(data, dict) else None
            if not isinstance(apps, dict):
                return {}
            try:
                return {str(a): minutes_of(v) for a, v in apps.items()}
            except (TypeError, ValueError, IndexError):
                return {}

        return merge(list(await asyncio.gather(*(one(w) for w in ready))))

    # -- /readyz and /admin/reload ----------------------------------------------------------

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
        fleet = self.fleet
        if fleet.stopping:
            return "draining"
        ready = sum(1 for w in fleet.workers.values() if w.ready and w.running())
        return None if ready == fleet.count else f"{ready}/{fleet.count} ready"

    async def on_sighup(self) -> None:
        from proxy.gateway.reload import swap_runtime

        try:
            text, config = await asyncio.to_thread(self.fleet.read_config)
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
            assert self.gateway is not None
            swap_runtime(self.gateway, config)
            self.fleet.remember(text, config)
        # Forwarded either way: each worker validates, counts and logs its own result.
        for worker in self.fleet.workers.values():
            if worker.ready:
                worker.send(signal.SIGHUP)
            else:
                worker.pending_hup = True

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
            # The supervisor's admin app reloaded the file: new workers start from it.
            try:
                text, config = await asyncio.to_thread(self.fleet.read_config)
            except ConfigError:
                pass  # changed again since; the next reload settles it
            else:
                self.fleet.remember(text, config)
        # The caller's own credentials: they were checked against the config the workers
        # still run, whatever the new one says about [admin] token.
        authorization = request.headers.get("Authorization", "")
        workers = list(self.fleet.workers.values())
        ready = [w for w in workers if w.ready and w.running()]
        for worker in workers:
            if worker not in ready:
                worker.pending_hup = True
        results = list(await asyncio.gather(*(_post_reload(w, authorization) for w in ready)))
        results += [{"pid": w.pid, "status": "starting"} for w in workers if w not in ready]
        body["workers"] = results
        body["ok"] = bool(body.get("ok")) and all(r.get("ok", True) for r in results)
        return web.json_response(body, status=response.status)


async def _post_reload(worker: Worker, authorization: str) -> dict[str, Any]:
    try:
        async with (
            worker_session(worker) as session,
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
