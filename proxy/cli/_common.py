"""What several command groups share: argument types, the store around an action, printing."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from proxy import compat
from proxy import config as config_mod
from proxy.connections.partial import StoreOnly
from proxy.errors import ConfigError
from proxy.store import open_store
from proxy.store.base import Store

T = TypeVar("T")
if TYPE_CHECKING:
    # What ``add_subparsers`` returns, handed to each group's ``register``.
    Commands = compat.SubParsersAction[argparse.ArgumentParser]


def duration(value: str) -> timedelta:
    """An argparse type: ``24h``, ``30s``... as a ``timedelta``."""
    try:
        return timedelta(seconds=config_mod.parse_duration(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def with_store(config: config_mod.Config | StoreOnly, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``action`` with the config's store opened, and close it whatever happens."""

    async def run() -> T:
        store = open_store(config.store.url)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def known_vendor(config: config_mod.Config | StoreOnly, vendor: str) -> None:
    if vendor not in config.vendors:
        raise ConfigError([f'vendor "{vendor}" is not in [vendors] of {config.source}'])


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[config_mod.as_text(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
