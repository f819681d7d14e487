"""The limiter role of the store (``LimitStore``: token buckets and slots), run unchanged on
every backend."""

from __future__ import annotations

import asyncio

import pytest

from proxy.store import Store
from tests.store.conftest import Backend

# -- limiters -----------------------------------------------------------------------------------


async def test_token_bucket_allows_a_burst_then_says_how_long_to_wait(store: Store) -> None:
    assert [await store.take_tokens("vendor:acme", rate=1.0, burst=3) for _ in range(3)] == [
        0.0
    ] * 3
    wait = await store.take_tokens("vendor:acme", rate=1.0, burst=3)
    assert 0.8 < wait <= 1.0
    # Refused: nothing was taken, so asking again says (about) the same.
    again = await store.take_tokens("vendor:acme", rate=1.0, burst=3)
    assert 0.7 < again <= wait
    # Another key has its own bucket.
    assert await store.take_tokens("district:springfield", rate=1.0, burst=3) == 0.0


async def test_token_bucket_refills_at_rate_and_retry_after_is_accurate(store: Store) -> None:
    assert await store.take_tokens("k", rate=20.0, burst=1) == 0.0
    wait = await store.take_tokens("k", rate=20.0, burst=1)
    assert 0.0 < wait <= 0.05
    await asyncio.sleep(wait + 0.01)  # a client that honours Retry-After gets in
    assert await store.take_tokens("k", rate=20.0, burst=1) == 0.0
    # Waiting a third of the time is not enough.
    wait = await store.take_tokens("k", rate=20.0, burst=1)
    await asyncio.sleep(wait / 3)
    assert await store.take_tokens("k", rate=20.0, burst=1) > 0.0


async def test_token_bucket_cost_and_bad_arguments(store: Store) -> None:
    assert await store.take_tokens("c", rate=10.0, burst=5, cost=5) == 0.0
    wait = await store.take_tokens("c", rate=10.0, burst=5, cost=5)
    assert 0.4 < wait <= 0.5
    with pytest.raises(ValueError):
        await store.take_tokens("c", rate=10.0, burst=5, cost=6)
    with pytest.raises(ValueError):
        await store.take_tokens("c", rate=0.0, burst=5)


async def test_token_bucket_never_holds_more_than_burst(store: Store) -> None:
    assert await store.take_tokens("idle", rate=100.0, burst=2) == 0.0
    await asyncio.sleep(0.1)  # would refill 10 tokens without the cap
    results = [await store.take_tokens("idle", rate=100.0, burst=2) for _ in range(3)]
    assert results[:2] == [0.0, 0.0] and results[2] > 0.0


async def test_slots_hold_the_limit_and_release(store: Store) -> None:
    key = "district:springfield"
    assert await store.acquire_slot(key, 2, "req-a", ttl=30) is True
    assert await store.acquire_slot(key, 2, "req-b", ttl=30) is True
    assert await store.acquire_slot(key, 2, "req-c", ttl=30) is False
    assert await store.acquire_slot(key, 2, "req-a", ttl=30) is True  # renewing is not a 3rd slot
    assert await store.acquire_slot(key, 2, "req-c", ttl=30) is False
    assert await store.acquire_slot("district:other", 2, "req-c", ttl=30) is True

    await store.release_slot(key, "req-a")
    await store.release_slot(key, "never-held")  # no-op
    assert await store.acquire_slot(key, 2, "req-c", ttl=30) is True
    assert await store.acquire_slot(key, 2, "req-d", ttl=30) is False
    with pytest.raises(ValueError):
        await store.acquire_slot(key, 0, "req-e", ttl=30)
    with pytest.raises(ValueError):
        await store.acquire_slot(key, 2, "req-e", ttl=0)


async def test_slots_of_crashed_holders_free_after_ttl(store: Store) -> None:
    assert await store.acquire_slot("s", 1, "crashed", ttl=0.2) is True
    assert await store.acquire_slot("s", 1, "waiting", ttl=5) is False
    await asyncio.sleep(0.3)  # "crashed" never releases
    assert await store.acquire_slot("s", 1, "waiting", ttl=5) is True
    assert await store.acquire_slot("s", 1, "crashed", ttl=0.2) is False


async def test_slot_limit_holds_under_concurrency(store: Store, backend: Backend) -> None:
    others = [backend.make() for _ in range(3)]
    try:
        stores = [store, *others]
        results = await asyncio.gather(
            *(stores[i % 4].acquire_slot("busy", 5, f"h{i}", ttl=30) for i in range(40))
        )
        assert sum(results) == 5
    finally:
        for other in others:
            await other.close()
