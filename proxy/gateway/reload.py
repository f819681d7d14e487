"""The reload operation: validate the config file again and swap it in (docs/http-api.md ``serve``).

SIGHUP and ``POST /admin/reload`` both call ``reload_config``. A valid file is swapped in
atomically (requests in flight keep the runtime they started with), an invalid one is logged
and the old one kept, and ``config_reloads_total{result}`` counts both; the audit trail records
each attempt. Settings bound when the listeners started (listen addresses, the store URL,
request size limits) need a restart: a reload that changes them applies the rest and logs a
warning naming each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from proxy import config as config_mod
from proxy.config import Config
from proxy.errors import ConfigError, ProxyError
from proxy.gateway.context import SERVICES
from proxy.gateway.runtime import Runtime, build_runtime
from proxy.store.base import AuditEvent
from proxy.tokens import now_utc

log = logging.getLogger("oneroster_proxy")
RELOAD_LOCK = web.AppKey("reload_lock", asyncio.Lock)


def swap_runtime(app: web.Application, config: Config) -> Runtime:
    """Install a validated config; requests in flight keep the runtime they started with."""
    services = app[SERVICES]
    old = services.runtime.current
    new = build_runtime(config, services.token_source, previous=old)
    services.runtime.current = new
    services.authenticator.set_ttl(config.store.cache_ttl)
    # A reload may change vendors, TOML districts or keys: store connections are built again.
    services.store_connections.ttl = config.store.cache_ttl
    services.store_connections.forget()
    return new


async def reload_config(gateway: web.Application, *, interface: str) -> Config:
    """Validate the config file again and swap it in; ConfigError leaves the old one."""
    services = gateway[SERVICES]
    # ``start`` installs the lock before the app freezes; a gateway built some other way
    # reloads unserialised (each reload still swaps one whole runtime).
    lock = gateway.get(RELOAD_LOCK) or asyncio.Lock()
    async with lock:
        source = services.runtime.current.config.source
        try:
            if source is None:
                raise ConfigError(["this proxy was not started from a config file"])
            new = await asyncio.to_thread(config_mod.load, source)
        except ConfigError as err:
            services.metrics.config_reloads.labels("error").inc()
            log.error(
                "config reload refused; keeping the running config",
                extra={
                    "fields": {
                        "event": "config.reload",
                        "interface": interface,
                        "result": "error",
                        "problems": err.problems,
                    }
                },
            )
            await _audit(gateway, interface, "error", {"problems": err.problems})
            raise
        old = services.runtime.current.config
        swap_runtime(gateway, new)
        await services.sync_client_secrets()
        services.metrics.config_reloads.labels("ok").inc()
        services.metrics.set_connections(new)
        for key in restart_only_changes(old, new):
            log.warning(
                "config reload: %s changed; it applies after a restart",
                key,
                extra={"fields": {"event": "config.reload", "key": key}},
            )
        log.info(
            "config reloaded",
            extra={
                "fields": {
                    "event": "config.reload",
                    "interface": interface,
                    "result": "ok",
                    "connections": len(new.connections),
                }
            },
        )
        for warning in new.warnings:
            log.warning("config warning: %s", warning)
        await _audit(gateway, interface, "ok", {"connections": len(new.connections)})
        return new


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """Key paths whose new value a reload cannot apply (bound when the listeners started)."""
    pairs = {
        "server.listen": (old.server.listen, new.server.listen),
        "server.max_body": (old.server.max_body, new.server.max_body),
        "server.max_line": (old.server.max_line, new.server.max_line),
        "server.max_headers": (old.server.max_headers, new.server.max_headers),
        "admin.listen": (old.admin.listen, new.admin.listen),
        "store.url": (old.store.url, new.store.url),
    }
    return [key for key, (a, b) in pairs.items() if a != b]


async def _audit(
    gateway: web.Application, interface: str, result: str, detail: dict[str, Any]
) -> None:
    try:
        await gateway[SERVICES].store.add_audit(
            AuditEvent(
                at=now_utc(),
                action="config.reload",
                interface=interface,
                detail={"result": result, **detail},
            )
        )
    except ProxyError as exc:
        log.warning("could not record the reload in the audit trail: %s", exc.description)
