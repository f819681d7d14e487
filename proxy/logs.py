"""Structured logs: one JSON line per request and per operator action (issue 4 part 6).

SECURITY: no line ever carries a token, key, secret or query value (filters carry student
names): the access line has the path and the *names* of the query parameters only.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .handler import Exchange

access_log = logging.getLogger("oneroster_proxy.access")


def log_exchange(request: web.Request, ex: Exchange, elapsed: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    # SECURITY: never a query value (filters carry student names) nor a token: only the
    # path and the names of the query parameters.
    names = sorted({part.partition("=")[0] for part in request.query_string.split("&") if part})
    access_log.info(
        "request",
        extra={
            "fields": {
                "request_id": ex.request_id,
                "vendor": ex.vendor,
                "app": ex.app_id,
                "district": ex.district,
                "method": ex.method,
                "path": request.path if len(request.path) < 512 else request.path[:512] + "...",
                "query_params": names,
                "status": ex.status,
                "upstream_status": ex.upstream_status,
                "duration_ms": round(elapsed * 1000, 2),
                "bytes": ex.bytes_out,
                "token_id": ex.token_id if ex.token_id != "jwt" else None,
                "error": ex.error,
            }
        },
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and structured ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record)} {record.levelname.lower():7} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            base += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def setup_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
