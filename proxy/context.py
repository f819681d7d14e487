"""What every layer of the gateway shares: the app's ``Services`` and the request's ``Exchange``.

A leaf module (it imports no handler, app or server), so the gateway handler, the vendor API,
the admin listener, the reload operation and the worker processes all read the same typed
objects without importing the composition root (``proxy.app``) or each other. aiohttp habit:
shared objects under a typed ``web.AppKey``, per-request state in one small dataclass under a
``web.RequestKey`` (SPEC.md "Gateway listener", "Metrics", the access log of "Admin listener").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from .circuit import Circuits
from .config import ConnectionConfig, DistrictConfig
from .exchange import EXCHANGE, Exchange
from .inbound import Authenticator
from .jwt_cutoff import SecretWatch
from .limits import Limits
from .metrics import Metrics
from .pool import KeepAlivePool
from .resolve import StoreConnections
from .runtime import Runtime
from .signing.oauth2 import OAuth2TokenSource
from .store.base import Store
from .store.crypto import SecretBox


class RuntimeHolder:
    """The current runtime; replaced whole, never mutated, so readers need no lock."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime


@dataclass
class Services:
    """Everything a request needs beyond itself, built once per app by ``create_app``.

    ``runtime`` is set right after construction (building it needs ``token_source``), and the
    client sessions when the app starts (``cleanup_ctx``)."""

    store: Store
    authenticator: Authenticator
    metrics: Metrics
    limits: Limits
    circuits: Circuits
    runtime: RuntimeHolder = field(init=False)
    # appIds the TOML file does not define, looked up in the store (SPEC.md "Connections in
    # the store").
    managed: StoreConnections = field(init=False)
    session: aiohttp.ClientSession = field(init=False)
    write_session: aiohttp.ClientSession = field(init=False)
    # Bodiless GETs to districts (proxy.pool); everything else goes through ``session``.
    pool: KeepAlivePool = field(init=False)
    # Notices a changed vendor client_secret at each config load (the JWT kill switch).
    secrets: SecretWatch = field(default_factory=SecretWatch)

    async def sync_client_secrets(self) -> None:
        vendors = self.runtime.current.config.vendors
        await self.secrets.sync_logged(self.store, vendors, self.authenticator)

    def secret_box(self) -> SecretBox:
        """``[store] secret_keys`` of the running config (a reload may change them)."""
        return SecretBox(list(self.runtime.current.config.store.secret_keys))

    def token_source(
        self, district: DistrictConfig, conn: ConnectionConfig, scopes: list[str], timeout: float
    ) -> OAuth2TokenSource:
        counter = self.metrics.token_fetches.labels(district.name)
        return OAuth2TokenSource(
            district.token_url or "",
            conn.key,
            conn.secret,
            scopes,
            session_factory=lambda: self.session,
            timeout=timeout,
            on_fetch=counter.inc,
        )


SERVICES = web.AppKey("services", Services)


__all__ = ["EXCHANGE", "SERVICES", "Exchange", "RuntimeHolder", "Services"]
