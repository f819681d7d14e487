"""What the sandbox district's app holds and what one request carries through it.

The typed ``web.AppKey``s (docs/sandbox.md: tests run several districts side by
side and change faults or read what a district received while it runs), the request as the
district received it (``RecordedRequest``), the per-request ``Context``, and the imsx failure
payload every part of the district answers errors with. A leaf of ``proxy.sandbox``: the
middlewares, the handlers and the app factory all read these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proxy.sandbox.auth import OAuth1Verifier, TokenStore
from proxy.sandbox.district import District
from proxy.sandbox.options import Faults, SandboxOptions
from proxy.sandbox.render import HrefAbsolutizer


@dataclass
class RecordedRequest:
    """One request as the district received it."""

    method: str
    path: str  # path and query exactly as sent (the raw request target), base path included
    headers: list[tuple[str, str]]
    body: bytes
    verified: bool = False  # authentication succeeded
    status: int | None = None  # status answered (None: never answered)

    @property
    def raw_path(self) -> str:
        return self.path

    def header(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in the order received."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Context:
    """Per-request state of the sandbox."""

    entry: RecordedRequest
    scopes: frozenset[str] = field(default_factory=frozenset)


OPTIONS = web.AppKey("sandbox_options", SandboxOptions)
DISTRICT = web.AppKey("sandbox_district", District)
FAULTS = web.AppKey("sandbox_faults", Faults)
RECORDED = web.AppKey("sandbox_recorded", list)  # list[RecordedRequest]
TOKENS = web.AppKey("sandbox_tokens", TokenStore)
VERIFIER = web.AppKey("sandbox_oauth1_verifier", OAuth1Verifier)
# Credentials accepted besides the options' own: a renewal in progress (``accept_credentials``).
ALSO: web.AppKey[dict[str, str]] = web.AppKey("sandbox_also_credentials")
HREFS = web.AppKey("sandbox_hrefs", HrefAbsolutizer)
CONTEXT = web.RequestKey("sandbox_context", Context)

JSON = "application/json"


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def imsx_response(
    status: int, code_minor: str, description: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The OneRoster imsx failure payload a district answers errors with."""
    payload = {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": code_minor,
                }
            ]
        },
    }
    return web.Response(status=status, body=dumps(payload), content_type=JSON, headers=headers)
