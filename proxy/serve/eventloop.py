"""The event loop ``serve`` runs on: uvloop where it is installed, asyncio's own otherwise.

uvloop (libuv under asyncio's API) runs the same aiohttp code with a cheaper loop: its
transports read and write sockets in C, callbacks and timers cost less, so every request of
the gateway spends less CPU outside the proxy's own work (``bench/targets.py`` measures how
much: the small page and the 1 MB page, the bare forwarder on both loops beside the proxy).
Nothing in the proxy depends on which loop runs it.

``ONEROSTER_PROXY_LOOP=asyncio`` turns uvloop off (``uvloop`` insists on it: an error when it
is not installed); ``serve --workers N`` passes the environment to its workers, so one
setting holds for every process. The loop in use is named in the ``listening`` log line.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from proxy.errors import ConfigError

T = TypeVar("T")
ENV = "ONEROSTER_PROXY_LOOP"
CHOICES = ("uvloop", "asyncio")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default loop."""
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted not in ("", *CHOICES):
        raise ConfigError([f"{ENV}: must be one of {', '.join(CHOICES)}, not {wanted!r}"])
    if wanted == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise ConfigError([f"{ENV}: uvloop is not installed"]) from None
        return None
    # A typed name: without uvloop's stubs (ignore_missing_imports) the attribute is Any.
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the chosen loop."""
    try:
        factory = loop_factory()
    except ConfigError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop running this code."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
