"""Test support: a real proxy (in process, on loopback port 0) wired to a real sandbox district.

``ProxyHarness`` writes a real TOML config file, opens a real sqlite store, starts both
listeners with ``proxy.serve.server.start`` and issues real tokens, so tests talk HTTP to exactly
what ``oneroster-proxy serve`` runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from proxy import config as config_mod
from proxy import tokens
from proxy.serve.server import Running, bind_socket, start

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
JWT_KEY = "jwt-key-for-tests-0123456789abcdef0123"
ACME_CLIENT_SECRET = "acme-client-secret-0123456789abcdef"
ACME_VENDOR_AUTH = "AwesomeLMS:F24F1E3A9B"


def installed_tool(name: str) -> str | None:
    """The path of a command-line tool a Python package of the test or dev extra installs
    (``hadolint``, ``lint-imports``), or None.

    pip puts such tools beside the interpreter (``.venv/bin/``), and the README's test command
    runs ``.venv/bin/python -m pytest`` without that directory on ``PATH``: look there first,
    then on ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (a district's windows and pauses)
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(type(value))


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """Enough TOML for configs: top tables and one level of named sub-tables."""
    lines: list[str] = []
    for top, table in doc.items():
        flat = {k: v for k, v in table.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        if flat or not nested:
            lines.append(f"[{top}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in flat.items()]
            lines.append("")
        for name, sub in nested.items():
            lines.append(f"[{top}.{json.dumps(name)}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in sub.items()]
            lines.append("")
    return "\n".join(lines)


async def serve_on_loopback(app: web.Application, **runner: Any) -> tuple[web.AppRunner, int]:
    """``app`` served on 127.0.0.1 at a port the OS picks: its runner (``cleanup()`` it when
    done; ``runner`` are ``AppRunner`` options) and the port."""
    started = web.AppRunner(app, **runner)
    await started.setup()
    await web.TCPSite(started, "127.0.0.1", 0).start()
    return started, int(started.addresses[0][1])


class SteppedClock:
    """A clock a test moves by hand (``Authenticator(clock=...)``, ``proxy.gateway.inbound``):
    wall and monotonic time start at the real ones and advance together, only when told, so an
    expiry or a cache TTL is judged on the test's word, not the machine's speed."""

    def __init__(self) -> None:
        self._wall = time.time()
        self._mono = time.monotonic()

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += seconds

    def set_wall(self, at: dt.datetime) -> None:
        """Move both clocks to the wall time ``at`` (forward or back)."""
        self.advance(at.timestamp() - self._wall)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ALL_SCOPES = [
    "roster.readonly",
    "roster-core.readonly",
    "roster-demographics.readonly",
    "resource.readonly",
    "gradebook.readonly",
    "gradebook.createput",
    "gradebook.delete",
]


def base_config(tmp_path: Path, sandbox: Any, **server: Any) -> dict[str, Any]:
    """acme -> app-7 (the sandbox, every scope); other -> app-8 (same district)."""
    oauth2 = getattr(sandbox, "token_url", None) is not None
    district: dict[str, Any] = {
        "base_url": sandbox.base_url,
        "auth": "oauth2" if oauth2 else "oauth1",
    }
    if oauth2:
        district["token_url"] = sandbox.token_url
    if getattr(sandbox, "vendor_key", None):
        district["vendor_authorization"] = True
    acme: dict[str, Any] = {
        "client_secret": ACME_CLIENT_SECRET,
        "vendor_authorization": ACME_VENDOR_AUTH,
    }
    if getattr(sandbox, "vendor_key", None):
        acme["vendor_authorization"] = f"{sandbox.vendor_key}:{sandbox.vendor_secret}"
    return {
        "server": {
            "listen": "127.0.0.1:0",
            "jwt_keys": [JWT_KEY],
            "upstream_timeout": "5s",
            # Background checks (on by default) would send the district requests of their own
            # during a test; a test of them sets an interval.
            "check_interval": "0s",
            **server,
        },
        "admin": {"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
        "store": {"url": f"sqlite://{tmp_path}/store.db", "cache_ttl": "1s"},
        "vendors": {"acme": acme, "other": {}},
        "districts": {"springfield": district},
        "connections": {
            "app-7": {
                "vendor": "acme",
                "district": "springfield",
                "key": sandbox.key,
                "secret": sandbox.secret,
                "scopes": list(ALL_SCOPES),
            },
            "app-8": {
                "vendor": "other",
                "district": "springfield",
                "key": sandbox.key,
                "secret": sandbox.secret,
                "scopes": ["roster-core.readonly"],
            },
        },
    }


@dataclass
class ProxyHarness:
    tmp_path: Path
    doc: dict[str, Any]
    running: Running | None = None
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config_path = self.tmp_path / "proxy.toml"
        self.write(self.doc)

    def write(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.config_path.write_text(toml_dumps(doc))

    @property
    def config(self) -> config_mod.Config:
        return config_mod.load(str(self.config_path))

    async def start(self) -> ProxyHarness:
        cfg = self.config
        self.running = await start(
            cfg,
            gateway_sock=bind_socket(config_mod.Listen("127.0.0.1", 0)),
            admin_sock=bind_socket(config_mod.Listen("127.0.0.1", 0)),
        )
        return self

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop(1.0)
            self.running = None

    @property
    def url(self) -> str:
        assert self.running is not None
        return f"http://127.0.0.1:{self.running.gateway_port}"

    @property
    def admin_url(self) -> str:
        assert self.running is not None
        return f"http://127.0.0.1:{self.running.admin_port}"

    @property
    def services(self) -> Any:
        from proxy.gateway.context import SERVICES

        assert self.running is not None
        return self.running.gateway[SERVICES]

    async def token(self, vendor: str = "acme", ttl: dt.timedelta | None = None) -> str:
        issued = await tokens.issue(self.services.store, vendor, ttl=ttl, interface="cli")
        return issued.token

    def app_url(self, rest: str, app: str = "app-7") -> str:
        return f"{self.url}/{app}/ims/oneroster/{rest}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_json(
    session: aiohttp.ClientSession, url: str, token: str, **kw: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = {**auth(token), **kw.pop("headers", {})}
    async with session.get(url, headers=headers, **kw) as resp:
        body = await resp.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = body
        return resp.status, data, resp.headers


def assert_imsx(data: Any, code_minor: str | None = None) -> None:
    """The imsx failure payload (docs/http-api.md, errors made by the proxy, and the sandbox's
    own); with ``code_minor``, that imsx_codeMinorFieldValue. The one copy every test uses."""
    assert isinstance(data, dict), data
    assert data["imsx_codeMajor"] == "failure"
    assert data["imsx_severity"] == "error"
    assert isinstance(data["imsx_description"], str) and data["imsx_description"]
    fields = data["imsx_CodeMinor"]["imsx_codeMinorField"]
    assert fields[0]["imsx_codeMinorFieldName"] == "TargetEndSystem"
    if code_minor is not None:
        assert fields[0]["imsx_codeMinorFieldValue"] == code_minor, fields


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as raw bytes on a new connection; everything answered until close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    finally:
        writer.close()
    return data
