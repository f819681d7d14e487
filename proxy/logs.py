"""Structured logs: one JSON line per request and per operator action (docs/commands.md ``serve``,
"Install and commands"), or ``key=value`` text with ``--log-format text``.

SECURITY: no line ever carries a token, key, secret or query value (filters carry student
names). The access line is built from safe fields only: the path and the *names* of the query
parameters. Every other line (operator actions, errors, tracebacks) is scrubbed on its way out
of anything shaped like a query string, a bearer credential, a vendor token or a JWT, so an
exception message quoting a URL cannot leak one either.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from proxy.exchange import Exchange

log = logging.getLogger("oneroster_proxy")
access_log = logging.getLogger("oneroster_proxy.access")
ACCESS_LOGGER = access_log.name
_MAX_PATH = 512
# json.dumps's own string encoder (ensure_ascii), the C one where there is one.
_json_str = json.encoder.encode_basestring_ascii
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")
_SCRUB = (
    # SECURITY: the userinfo of any URL (scheme://user:pass@host), wherever it appears.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s'\"<>@]*@"), r"\1[redacted]@"),
    # A query string inside a URL or path: keep the "?" so the reader sees there was one.
    (re.compile(r"(\?)[^\s'\"<>]+"), r"\1[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic|oauth)\s+[^\s'\"]+"), r"\1 [redacted]"),
    (re.compile(r"\borp_([a-z0-9]{12})_[A-Za-z0-9_-]+"), r"orp_\1_[redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)(secret|password|token|key)=[^\s&'\"]+"), r"\1=[redacted]"),
)


def scrub(text: str) -> str:
    """``text`` without anything shaped like a credential or a query value."""
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    return value


def query_names(query_string: str) -> list[str]:
    """The parameter names of a raw query string; anything not shaped like a name is ``?``
    (a bare ``?Jane+Doe`` would otherwise put a value in the log)."""
    names = set()
    for part in query_string.split("&"):
        if part:
            name = part.partition("=")[0]
            names.add(name if _PARAM_NAME.match(name) else "?")
    return sorted(names)


# What follows "time" in every access line, as json.dumps writes it.
_ACCESS_HEAD = json.dumps({"level": "info", "logger": ACCESS_LOGGER, "msg": "request"})[1:-1]


class AccessWriter:
    """The JSON access line without the logging machinery: one ``json.dumps`` per request,
    written to the log stream in batches (a flush at most ``delay`` seconds after the first
    unflushed line, and at exit), so a busy gateway pays neither a LogRecord nor a write
    syscall per request. Other lines keep going through ``logging``."""

    def __init__(self, stream: IO[str], *, delay: float = 0.2, limit: int = 64 * 1024) -> None:
        self._stream = stream
        self._delay = delay
        self._limit = limit
        self._buffer: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def write(self, fields: dict[str, Any]) -> None:
        payload = {
            "time": self._time(),
            "level": "info",
            "logger": ACCESS_LOGGER,
            "msg": "request",
            **fields,
        }
        self._append(json.dumps(payload) + "\n")

    def write_encoded(self, members: str) -> None:
        """A line whose fields are already JSON: ``members`` is the text between the braces
        of their object (``"a": 1, "b": "x"``), encoded as ``json.dumps`` would; the line is
        byte for byte what ``write`` makes of the same fields."""
        self._append(f'{{"time": "{self._time()}", {_ACCESS_HEAD}, {members}}}\n')

    def _time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def _append(self, line: str) -> None:
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= self._limit:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                self._timer = loop.call_later(self._delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        text, self._buffer, self._size = "".join(self._buffer), [], 0
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must never fail a request


_writer: AccessWriter | None = None


def log_exchange(request: web.Request, ex: Exchange, elapsed: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    duration_ms = round(elapsed * 1000, 2)
    token_id = ex.token_id
    if _writer is not None:
        # Encoded here field by field, with json's own C string encoder and int/float reprs
        # (what json.dumps writes for these types): a dict and a json.dumps per request cost
        # twice as much. The fields that repeat from request to request (who, where, which
        # path and parameter names) are encoded once per distinct value and remembered.
        # tests/test_logs.py compares the line with json.dumps of the fields.
        key = (ex.vendor, ex.app_id, ex.district, ex.method, request.raw_path)
        middle = _encoded.get(key)
        if middle is None:
            middle = _encode_middle(request, ex)
            if len(_encoded) >= _ENCODED_MAX:
                _encoded.clear()  # the path is the vendor's to vary: bound what it can hold
            _encoded[key] = middle
        upstream_status = ex.upstream_status
        _writer.write_encoded(
            f'"request_id": {_json_str(ex.request_id)}, {middle}, '
            f'"status": {int.__repr__(ex.status)}, '
            f'"upstream_status": '
            f"{'null' if upstream_status is None else int.__repr__(upstream_status)}, "
            f'"duration_ms": {float.__repr__(duration_ms)}, '
            f'"bytes": {int.__repr__(ex.bytes_out)}, '
            f'"token_id": {_json_opt(token_id)}, "error": {_json_opt(ex.error)}'
        )
        return
    path = _logged_path(request)
    names = query_names(request.query_string)
    fields = {
        "request_id": ex.request_id,
        "vendor": ex.vendor,
        "app": ex.app_id,
        "district": ex.district,
        "method": ex.method,
        "path": path,
        "query_params": names,
        "status": ex.status,
        "upstream_status": ex.upstream_status,
        "duration_ms": duration_ms,
        "bytes": ex.bytes_out,
        "token_id": token_id,
        "error": ex.error,
    }
    access_log.info("request", extra={"fields": fields})


def _logged_path(request: web.Request) -> str:
    path = request.path
    return path if len(path) <= _MAX_PATH else path[:_MAX_PATH] + "..."


def _encode_middle(request: web.Request, ex: Exchange) -> str:
    names = query_names(request.query_string)
    return (
        f'"vendor": {_json_str(ex.vendor)}, "app": {_json_str(ex.app_id)}, '
        f'"district": {_json_str(ex.district)}, "method": {_json_str(ex.method)}, '
        f'"path": {_json_str(_logged_path(request))}, '
        f'"query_params": [{", ".join(map(_json_str, names))}]'
    )


# (vendor, app, district, method, raw path and query) -> their encoded fields.
_encoded: dict[tuple[str, str, str, str, str], str] = {}
_ENCODED_MAX = 1024


def _json_opt(value: str | None) -> str:
    return "null" if value is None else _json_str(value)


def flush_access_log() -> None:
    if _writer is not None:
        _writer.flush()


def log_action(message: str, **fields: Any) -> None:
    """One line for an operator action (token issue/rotate/revoke, reload). ``fields`` name
    ids, never secrets; ``event`` says what happened, ``interface`` through what."""
    log.info(message, extra={"fields": fields})


def _fields(record: logging.LogRecord) -> dict[str, Any] | None:
    fields = getattr(record, "fields", None)
    if not isinstance(fields, dict):
        return None
    if record.name == ACCESS_LOGGER:
        return fields  # built from safe values only (see log_exchange)
    return {k: _scrub_value(v) for k, v in fields.items()}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and structured ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        fields = _fields(record)
        if fields:
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``time level message key=value ...`` for humans (``--log-format text``)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
        base = f"{stamp} {record.levelname.lower():7} {scrub(record.getMessage())}"
        fields = _fields(record)
        if fields:
            base += " " + " ".join(
                f"{k}={_text(v)}" for k, v in fields.items() if v is not None and v != []
            )
        if record.exc_info:
            base += "\n" + scrub(self.formatException(record.exc_info))
        return base


def _text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if (" " in value or not value) else value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def setup_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    global _writer
    handler = logging.StreamHandler()
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python warnings (DeprecationWarning from a dependency, ResourceWarning...) become log
    # lines in the chosen format, not raw text in the middle of a JSON log.
    logging.captureWarnings(True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The logging module's per-record extras (caller lookup, thread and process names) cost
    # more than the rest of a log line and tell an operator nothing here.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if _writer is not None:
        _writer.flush()
    _writer = AccessWriter(handler.stream) if fmt == "json" else None
    if _writer is not None:
        atexit.register(_writer.flush)
