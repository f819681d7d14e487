"""``proxy.courtesy.fair.FairSlots``: while every slot is busy, waiters go round-robin by vendor,
then by connection, not in arrival order (docs/configuration.md "SIS courtesy")."""

from __future__ import annotations

import asyncio

from proxy.courtesy.fair import FairSlots


async def served_order(slots: FairSlots, waiters: list[tuple[str, str]]) -> list[str]:
    """Queue ``waiters`` (vendor, app) behind a slot the first of them holds, then free it;
    the order they got in."""
    assert slots.try_take(*waiters[0])
    order: list[str] = []

    async def one(i: int, vendor: str, app: str) -> None:
        assert await slots.acquire(5.0, vendor, app)
        order.append(f"{vendor}/{app}#{i}")
        await asyncio.sleep(0)
        slots.release()

    tasks = [asyncio.create_task(one(i, v, a)) for i, (v, a) in enumerate(waiters)]
    await asyncio.sleep(0)  # every waiter queued, in list order
    assert slots.waiting == len(waiters)
    slots.release()
    await asyncio.gather(*tasks)
    assert slots.held == 0 and slots.waiting == 0
    return order


async def test_a_second_vendor_does_not_wait_behind_a_bulk_sync() -> None:
    bulk = [("acme", "app-7")] * 5
    order = await served_order(FairSlots(1), [*bulk, ("other", "app-8")])
    # acme just had its turn (the held slot): the other vendor's lookup goes first.
    assert order == [
        "other/app-8#5",
        "acme/app-7#0",
        "acme/app-7#1",
        "acme/app-7#2",
        "acme/app-7#3",
        "acme/app-7#4",
    ]


async def test_one_vendor_connections_take_turns() -> None:
    waiters = [("acme", "app-7")] * 3 + [("acme", "app-9")] * 2 + [("other", "app-8")]
    order = await served_order(FairSlots(1), waiters)
    assert order == [
        "other/app-8#5",
        "acme/app-9#3",
        "acme/app-7#0",
        "acme/app-9#4",
        "acme/app-7#1",
        "acme/app-7#2",
    ]


async def test_one_connection_alone_is_first_come_first_served() -> None:
    order = await served_order(FairSlots(1), [("acme", "app-7")] * 4)
    assert order == [f"acme/app-7#{i}" for i in range(4)]


async def test_a_waiter_that_gives_up_leaves_its_turn() -> None:
    slots = FairSlots(1)
    assert slots.try_take("acme", "app-7")
    assert not await slots.acquire(0.01, "acme", "app-7")
    assert slots.waiting == 0
    got = asyncio.create_task(slots.acquire(5.0, "other", "app-8"))
    await asyncio.sleep(0)
    slots.release()
    assert await got
    slots.release()
    assert slots.held == 0 and slots.try_take()


async def test_vendors_waiting_together_alternate() -> None:
    waiters = [("acme", "app-7")] * 4 + [("other", "app-8")] * 3
    order = await served_order(FairSlots(1), waiters)
    vendors = [name.partition("/")[0] for name in order]
    assert vendors == ["other", "acme", "other", "acme", "other", "acme", "acme"]
