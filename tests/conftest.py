"""Shared fixtures: a real sandbox district and a real proxy in front of it, on loopback."""

from __future__ import annotations

import pathlib
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import aiohttp
import pytest


@pytest.fixture(autouse=True)
def _forget_applications() -> Iterator[None]:
    """After each test, let its aiohttp applications go: aiohttp caches every application's
    middleware chain (proxy/compat.py), which otherwise keeps each one alive with its event
    loop and sandbox data for the rest of the session."""
    yield
    from proxy.compat import forget_built_middlewares

    forget_built_middlewares()


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


# -- the quick loop ---------------------------------------------------------------------------
# `pytest -m "not slow"` is the loop for people at work: it leaves out the tests that start
# processes (the CLI or `serve` as subprocesses, redis-server and sentinels, Chromium). CI runs
# everything. A module that spawns a process anywhere marks all its tests; a test whose fixtures
# start redis (the store backends' "redis" parameter included) is marked on its own. Modules
# whose tests wait out real time (deadlines, Retry-After, cool-downs, a slow district) carry
# `pytestmark = pytest.mark.slow` themselves.
_SPAWNS = re.compile(
    r"^\s*(import subprocess|from tests\.(served|redis_server|sentinel_cluster) import|"
    r"from playwright|import playwright|from tests\.cli\.\w+ import)"
    # the CLI started through asyncio or the running interpreter (tests/cli/*)
    r"|\bcreate_subprocess_exec\(|\bsys\.executable\b",
    re.M,
)
_PROCESS_FIXTURES = frozenset({"redis_server", "sentinels", "sentinel_cluster", "browser", "page"})


def _spawns(path: pathlib.Path, seen: dict[pathlib.Path, bool]) -> bool:
    if path not in seen:
        seen[path] = bool(_SPAWNS.search(path.read_text(encoding="utf-8")))
    return seen[path]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen: dict[pathlib.Path, bool] = {}
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (
            _spawns(item.path, seen)
            or _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
            or "redis" in map(str, params.values())
        ):
            item.add_marker(pytest.mark.slow)
