"""Background tasks held until they finish.

The event loop keeps only weak references to its tasks, so a task nobody holds can be
garbage-collected mid-run (the asyncio documentation of ``create_task``). A task the proxy
starts is either held by its owner until awaited (an attribute or a local the same function
awaits) or, when nobody will await it, spawned on a :class:`TaskSet`, which holds it until it is
done. ruff's RUF006 refuses an unheld ``create_task``, and ``asyncio.create_task`` /
``asyncio.ensure_future`` are banned (``[tool.ruff.lint.flake8-tidy-imports.banned-api]`` in
pyproject.toml) so that every task is started on the running loop by name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class TaskSet:
    """Tasks started here are referenced until done; ``cancel``/``wait`` end them all."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def wait(self) -> None:
        """Wait for every task still running (their exceptions are theirs to log)."""
        tasks = list(self._tasks)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.difference_update(tasks)  # their done callbacks may not have run yet

    async def cancel(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.difference_update(tasks)


@contextlib.asynccontextmanager
async def kept_running(coro: Coroutine[Any, Any, Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """``coro`` as a task for the length of the block, then cancelled and awaited: the shape
    of an app's ``cleanup_ctx`` loop (the background checks, the change feed's daily walks)."""
    task = asyncio.get_running_loop().create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
