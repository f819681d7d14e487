"""What every layer of the gateway shares: the app's ``Services`` and the request's ``Exchange``.

A leaf module (it imports no handler, app or server), so the gateway handler, the vendor API,
the admin listener, the reload operation and the worker processes all read the same typed
objects without importing the composition root (``proxy.app``) or each other. aiohttp habit:
shared objects under a typed ``web.AppKey``, per-request state in one small dataclass under a
``web.RequestKey`` (docs/http-api.md, docs/metrics.md, the access log of "Admin listener").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from proxy.config import ConnectionConfig, DistrictConfig
from proxy.exchange import EXCHANGE, Exchange
from proxy.gateway.circuit import Circuits
from proxy.gateway.inbound import Authenticator
from proxy.gateway.jwt_cutoff import SecretWatch
from proxy.gateway.limits import Limits
from proxy.gateway.pool import KeepAlivePool
from proxy.gateway.resolve import StoreConnections
from proxy.gateway.runtime import Runtime
from proxy.metrics import Metrics
from proxy.sharing.ledger import Ledger
from proxy.signing.oauth2 import OAuth2TokenSource
from proxy.store.base import Store
from proxy.store.crypto import SecretBox


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
    # appIds the TOML file does not define, looked up in the store (docs/http-api.md).
    store_connections: StoreConnections = field(init=False)
    session: aiohttp.ClientSession = field(init=False)
    write_session: aiohttp.ClientSession = field(init=False)
    # Bodiless GETs to districts (proxy.gateway.pool); everything else goes through ``session``.
    pool: KeepAlivePool = field(init=False)
    # The access ledger's counts since the last flush (proxy.sharing.ledger).
    ledger: Ledger = field(default_factory=Ledger)
    # Notices a changed vendor client_secret at each config load (the JWT kill switch).
    secrets: SecretWatch = field(default_factory=SecretWatch)

    async def sync_client_secrets(self) -> None:
        config = self.runtime.current.config
        await self.secrets.sync_logged(
            self.store, config.vendors, self.authenticator, config.server.jwt_keys
        )

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
