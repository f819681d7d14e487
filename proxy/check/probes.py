"""The live probes of the checklist: signed, read-only GETs of one connection's district.

Only GETs with ``limit=1`` reach the district, signed exactly as the gateway signs them (the
connection's own OAuth1 signer or OAuth2 token, ``x-vendor-authorization`` on gradebook
endpoints), each bounded by ``[server] upstream_timeout``. The probe paths are checked against
``proxy.scopes`` at import, so they cannot drift from what the gateway lets through.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy import __version__
from proxy.bodies import read_up_to
from proxy.errors import ProxyError
from proxy.gateway import forward
from proxy.gateway.runtime import Connection
from proxy.scopes import (
    GRADEBOOK_CREATEPUT,
    GRADEBOOK_DELETE,
    GRADEBOOK_READ,
    RESOURCE,
    ROSTER,
    ROSTER_CORE,
    ROSTER_DEMOGRAPHICS,
    classify,
)

#: The most of a probe's body that is read (``limit=1`` answers are a few KB).
MAX_PROBE_BODY = 1024 * 1024

WRITE_SCOPES = (GRADEBOOK_CREATEPUT, GRADEBOOK_DELETE)
GRADEBOOK_SCOPES = frozenset({GRADEBOOK_READ, GRADEBOOK_CREATEPUT, GRADEBOOK_DELETE})
ROSTER_SCOPES = frozenset({ROSTER, ROSTER_CORE})
#: Read scopes in the order ``data_shared`` reports them.
READ_SCOPES = (ROSTER_CORE, ROSTER, ROSTER_DEMOGRAPHICS, RESOURCE, GRADEBOOK_READ)

# The cheapest endpoint of each kind, per OneRoster version ("{}" is an id to fill in). Each one's
# scope is asserted against proxy.scopes below, so the probes cannot drift from the gateway.
PATHS: dict[str, dict[str, str]] = {
    "v1p1": {
        "orgs": "v1p1/orgs",
        "schools": "v1p1/schools",
        "school_classes": "v1p1/schools/{}/classes",
        "demographics": "v1p1/demographics",
        "resources": "v1p1/resources",
        "lineItems": "v1p1/lineItems",
        "students": "v1p1/students",
    },
    "v1p2": {
        "orgs": "rostering/v1p2/orgs",
        "schools": "rostering/v1p2/schools",
        "school_classes": "rostering/v1p2/schools/{}/classes",
        "demographics": "rostering/v1p2/demographics",
        "resources": "resources/v1p2/resources",
        "lineItems": "gradebook/v1p2/lineItems",
        "students": "rostering/v1p2/students",
    },
}
#: Which probe shows each read scope is shared.
SCOPE_PROBE = {
    ROSTER_CORE: "orgs",
    ROSTER: "school_classes",
    ROSTER_DEMOGRAPHICS: "demographics",
    RESOURCE: "resources",
    GRADEBOOK_READ: "lineItems",
}


def _assert_probe_scopes() -> None:
    expected = {
        "orgs": ROSTER_SCOPES,
        "schools": ROSTER_SCOPES,
        "school_classes": frozenset({ROSTER}),
        "demographics": frozenset({ROSTER_DEMOGRAPHICS}),
        "resources": frozenset({RESOURCE}),
        "lineItems": frozenset({GRADEBOOK_READ}),
        "students": ROSTER_SCOPES,
    }
    for paths in PATHS.values():
        for kind, path in paths.items():
            scopes = classify(path.replace("{}", "x"), "GET").scopes
            if scopes != expected[kind]:
                raise AssertionError(f"check probe {path} needs {sorted(scopes)}")


_assert_probe_scopes()


@dataclass(frozen=True, slots=True)
class Probe:
    """What one GET of the district returned (``status`` None: no answer, see ``error``)."""

    path: str  # after /ims/oneroster/, query included
    status: int | None
    error: str | None = None
    data: Any = None
    total: int | None = None  # X-Total-Count
    elapsed: float = 0.0

    def says(self) -> str:
        """``GET v1p1/orgs?limit=1 answered 200`` / ``... failed: <why>``."""
        if self.status is None:
            return f"GET {self.path} failed: {self.error}"
        text = f"GET {self.path} answered {self.status}"
        description = _imsx_description(self.data) if self.status >= 400 else None
        return f'{text} ("{description}")' if description else text


def _imsx_description(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("imsx_description"), str):
        text = " ".join(data["imsx_description"].split())
        return text[:97] + "..." if len(text) > 100 else text
    return None


class Prober:
    """Signed, memoised GETs of one connection's district, each bounded by ``timeout``."""

    def __init__(self, conn: Connection, session: aiohttp.ClientSession, timeout: float) -> None:
        self.conn = conn
        self.session = session
        self.timeout = timeout
        self.token: str | None = None
        self._seen: dict[str, asyncio.Task[Probe]] = {}

    def url(self, path: str) -> str:
        return self.conn.upstream_prefix + path

    async def unsigned(self, path: str) -> Probe:
        return await self._send(path, signed=False)

    def get(self, path: str) -> Awaitable[Probe]:
        """The signed GET of ``path``; concurrent callers of one path share one request."""
        task = self._seen.get(path)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._send(path, signed=True))
            self._seen[path] = task
        return task

    async def _send(self, path: str, *, signed: bool) -> Probe:
        url = self.url(path)
        headers = [
            ("Accept", "application/json"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", f"oneroster-proxy-check/{__version__}"),
            ("X-Request-Id", uuid.uuid4().hex),
        ]
        if signed:
            if classify(path.partition("?")[0], "GET").gradebook and self.conn.vendor_header:
                headers.append(("x-vendor-authorization", self.conn.vendor_header))
            if self.conn.signer is not None:
                headers.append(("Authorization", self.conn.signer.authorization("GET", url)))
            elif self.token is not None:
                headers.append(("Authorization", f"Bearer {self.token}"))
        started = time.monotonic()
        try:
            response = await forward.send(
                self.session,
                forward.Outgoing("GET", url, [], None),
                headers,
                self.timeout,
                verify=self.conn.district.tls_verify,
            )
            try:
                with forward.UPSTREAM_ERRORS:
                    body = await read_up_to(response.content, MAX_PROBE_BODY)
            finally:
                response.release()
        except ProxyError as exc:
            return Probe(
                path, None, error=_error_text(exc, self.timeout), elapsed=time.monotonic() - started
            )
        try:
            data = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            data = None
        total_header = response.headers.get("X-Total-Count", "")
        total = int(total_header) if total_header.strip().isdigit() else None
        return Probe(
            path, response.status, data=data, total=total, elapsed=time.monotonic() - started
        )

    def close(self) -> None:
        for task in self._seen.values():
            task.cancel()


def _error_text(exc: ProxyError, timeout: float) -> str:
    if exc.status == 504:
        return f"no answer within {timeout:g}s (upstream_timeout)"
    cause = exc.__cause__
    reason = f" ({_short(cause)})" if cause is not None and _short(cause) else ""
    return f"{exc.description}{reason}"


def _short(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(
        exc, aiohttp.ClientSSLError
    ):
        # aiohttp's own text reads "Cannot connect to host H:P ssl:default [...]" even for a
        # plain-HTTP district; the operator needs the address and what the OS said.
        error = exc.os_error
        reason = os.strerror(error.errno) if error.errno and error.errno > 0 else error.strerror
        return f"cannot connect to {exc.host}:{exc.port}: {reason or 'connection failed'}"
    text = " ".join(str(exc).split())
    return text[:157] + "..." if len(text) > 160 else text


def collection_records(data: Any) -> list[Any] | None:
    """The records of a OneRoster collection answer (``{"users": [...]}``), or None."""
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list):
                return value
    return None
