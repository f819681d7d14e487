"""The sandbox district: a local OneRoster 1.1 + 1.2 server (docs/sandbox.md).

Vendors integrate against it before they meet a real district, ``oneroster-proxy demo`` puts
the proxy in front of it, and the test suite uses it as the real upstream.

    running = await start_sandbox(SandboxOptions(auth="oauth2"))
    running.base_url, running.key, running.secret, running.token_url
    running.faults.status_503_retry_after = 1      # break it at run time
    running.recorded                               # what it received
    await running.close()
"""

from __future__ import annotations

from proxy.sandbox.app import create_sandbox_app, revoke_all_tokens
from proxy.sandbox.options import ALL_SCOPES, PROFILES, Faults, SandboxOptions
from proxy.sandbox.server import RunningSandbox, run_sandbox_cli, start_sandbox
from proxy.sandbox.state import (
    DISTRICT,
    FAULTS,
    OPTIONS,
    RECORDED,
    TOKENS,
    RecordedRequest,
)

__all__ = [
    "ALL_SCOPES",
    "DISTRICT",
    "FAULTS",
    "OPTIONS",
    "PROFILES",
    "RECORDED",
    "TOKENS",
    "Faults",
    "RecordedRequest",
    "RunningSandbox",
    "SandboxOptions",
    "create_sandbox_app",
    "revoke_all_tokens",
    "run_sandbox_cli",
    "start_sandbox",
]
