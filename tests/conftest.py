"""Shared fixtures: a real sandbox district and a real proxy in front of it, on loopback."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import aiohttp
import pytest


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    running = await start_sandbox(SandboxOptions())
    yield running
    await running.close()


@pytest.fixture
async def start_proxy(
    tmp_path: pathlib.Path,
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    from tests.support import ProxyHarness, base_config

    started: list[ProxyHarness] = []

    async def start(sandbox: Any, doc: dict[str, Any] | None = None, **server: Any) -> Any:
        harness = ProxyHarness(tmp_path, doc or base_config(tmp_path, sandbox, **server))
        await harness.start()
        started.append(harness)
        return harness

    yield start
    for harness in started:
        await harness.stop()


@pytest.fixture
async def proxy(sandbox: Any, start_proxy: Callable[..., Awaitable[Any]]) -> Any:
    return await start_proxy(sandbox)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
