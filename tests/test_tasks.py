"""proxy.tasks.TaskSet: a spawned task is held until it finishes, even when nobody else keeps a
reference and the garbage collector runs, and ``cancel`` ends every task still running."""

from __future__ import annotations

import asyncio
import gc

from proxy.tasks import TaskSet


async def test_a_spawned_task_nobody_holds_runs_to_its_end() -> None:
    tasks = TaskSet()
    done = asyncio.Event()

    # The task and its coroutine are young: collecting the young generations reaches them,
    # without a full collection's walk over everything the test session holds (seconds).
    async def work() -> None:
        await asyncio.sleep(0)
        gc.collect(1)
        await asyncio.sleep(0)
        done.set()

    tasks.spawn(work())
    gc.collect(1)
    await asyncio.wait_for(done.wait(), 5)
    await tasks.wait()
    assert len(tasks) == 0


async def test_cancel_ends_every_running_task() -> None:
    tasks = TaskSet()
    forever = asyncio.Event()
    started = [tasks.spawn(forever.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert len(tasks) == 3
    await tasks.cancel()
    assert all(task.cancelled() for task in started)
    assert len(tasks) == 0
