"""The per-request record: what one request learns on its way through the gateway.

A leaf (it imports nothing of the package), so the access log (``proxy.logs``) and the shared
``proxy.gateway.context`` both read it without importing each other (docs/metrics.md, the access
log of "Admin listener").
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(slots=True)
class Exchange:
    """Everything one request learns on its way through; read by metrics and the access log."""

    request_id: str
    started: float
    method: str
    vendor: str = "-"
    district: str = "-"
    app_id: str = "-"
    resource: str = "other"
    status: int = 0
    upstream_status: int | None = None
    bytes_out: int = 0
    token_id: str | None = None
    error: str | None = None


EXCHANGE = web.RequestKey("exchange", Exchange)
