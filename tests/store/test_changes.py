"""The store conformance suite, continued: the change feed's hashes, staging, atomic publish,
feed reads and trimming (docs/http-api.md "Change feed"), run unchanged on sqlite and on
redis-server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from proxy.errors import NotFound
from proxy.store import Store
from proxy.store.base import WalkRecord
from tests.store.conftest import Backend

T0 = datetime(2026, 3, 1, 2, 0, 0, 250001, tzinfo=UTC)


def walk(walk_id: str, state: str = "running", **fields: object) -> WalkRecord:
    return WalkRecord(app_id="app-7", walk_id=walk_id, state=state, started=T0, **fields)  # type: ignore[arg-type]


async def publish(store: Store, walk_id: str, rows: dict[str, str], at: datetime = T0) -> int:
    await store.save_walk(walk(walk_id))
    assert await store.stage_hashes("app-7", walk_id, "users", list(rows.items())) == []
    await store.stage_changes("app-7", walk_id, [("users", sid, "created") for sid in rows])
    done = walk(walk_id, "published", finished=at, counts={"users": {"created": len(rows)}})
    return await store.publish_walk(done, ["users"])


async def test_a_published_walk_becomes_the_known_hashes_and_the_feed(store: Store) -> None:
    assert await store.get_walk("app-7") is None
    assert await publish(store, "w1", {"u1": "h1", "u2": "h2"}) == 2
    assert await store.known_hashes("app-7", "users", ["u1", "u2", "u3"]) == {
        "u1": "h1",
        "u2": "h2",
    }
    assert await store.known_count("app-7", "users") == 2
    assert await store.known_count("app-7", "orgs") == 0
    changes = await store.read_changes("app-7", 0, 10)
    assert [(c.seq, c.collection, c.sourced_id, c.change, c.at) for c in changes] == [
        (1, "users", "u1", "created", T0),
        (2, "users", "u2", "created", T0),
    ]
    kept = await store.get_walk("app-7")
    assert kept is not None and kept.state == "published" and kept.finished == T0
    assert kept.counts == {"users": {"created": 2}}
    # A second publish of the same walk changes nothing.
    with pytest.raises(NotFound):
        await store.publish_walk(replace(kept, state="published"), ["users"])
    assert len(await store.read_changes("app-7", 0, 10)) == 2


async def test_reads_never_return_more_than_the_limit_and_start_after_the_cursor(
    store: Store,
) -> None:
    await publish(store, "w1", {f"u{i:04d}": "h" for i in range(30)})
    first = await store.read_changes("app-7", 0, 10)
    assert [c.seq for c in first] == list(range(1, 11))
    assert [c.seq for c in await store.read_changes("app-7", 25, 10)] == [26, 27, 28, 29, 30]
    assert await store.read_changes("app-7", 30, 10) == []
    assert await store.read_changes("app-8", 0, 10) == []


async def test_a_sourced_id_staged_twice_is_reported(store: Store) -> None:
    await store.save_walk(walk("w1"))
    assert await store.stage_hashes("app-7", "w1", "users", [("u1", "a"), ("u2", "b")]) == []
    assert await store.stage_hashes("app-7", "w1", "users", [("u3", "c"), ("u1", "d")]) == ["u1"]
    # Another collection is another namespace.
    assert await store.stage_hashes("app-7", "w1", "orgs", [("u1", "a")]) == []


async def test_missing_ids_are_the_known_ones_this_walk_did_not_stage(store: Store) -> None:
    await publish(store, "w1", {f"u{i:05d}": "h" for i in range(2500)})
    await store.save_walk(walk("w2"))
    seen = [(f"u{i:05d}", "h") for i in range(2500) if i % 7]
    for start in range(0, len(seen), 500):
        await store.stage_hashes("app-7", "w2", "users", seen[start : start + 500])
    missing: list[str] = []
    cursor: str | None = ""
    while cursor is not None:
        batch, cursor = await store.missing_ids("app-7", "w2", "users", cursor)
        missing += batch
    assert sorted(missing) == [f"u{i:05d}" for i in range(2500) if i % 7 == 0]


async def test_publish_replaces_only_the_walked_collections_and_continues_the_seq(
    store: Store,
) -> None:
    await publish(store, "w1", {"u1": "h1", "u2": "h2"})
    await store.save_walk(walk("w2"))
    await store.stage_hashes("app-7", "w2", "users", [("u1", "h1b")])
    await store.stage_changes(
        "app-7", "w2", [("users", "u1", "updated"), ("users", "u2", "deleted")]
    )
    at = T0 + timedelta(days=1)
    assert await store.publish_walk(walk("w2", "published", finished=at), ["users"]) == 2
    assert await store.known_hashes("app-7", "users", ["u1", "u2"]) == {"u1": "h1b"}
    changes = await store.read_changes("app-7", 2, 10)
    assert [(c.seq, c.sourced_id, c.change, c.at) for c in changes] == [
        (3, "u1", "updated", at),
        (4, "u2", "deleted", at),
    ]


async def test_a_dropped_or_other_walk_publishes_nothing(store: Store) -> None:
    await publish(store, "w1", {"u1": "h1"})
    await store.save_walk(walk("w2"))
    await store.stage_hashes("app-7", "w2", "users", [("u9", "x")])
    await store.stage_changes("app-7", "w2", [("users", "u9", "created")])
    await store.drop_walk("app-7", "w2")
    await store.save_walk(walk("w2", "discarded"))
    with pytest.raises(NotFound):
        await store.publish_walk(walk("w2", "published", finished=T0), ["users"])
    # A walk that is not the kept one cannot publish either.
    with pytest.raises(NotFound):
        await store.publish_walk(walk("w3", "published", finished=T0), ["users"])
    assert await store.known_hashes("app-7", "users", ["u1", "u9"]) == {"u1": "h1"}
    assert [c.sourced_id for c in await store.read_changes("app-7", 0, 10)] == ["u1"]


async def test_a_held_walk_can_still_be_published(store: Store) -> None:
    await store.save_walk(walk("w1", "held", counts={"users": {"deleted": 5}}))
    await store.stage_hashes("app-7", "w1", "users", [("u1", "h")])
    await store.stage_changes("app-7", "w1", [("users", "u1", "created")])
    held = await store.get_walk("app-7")
    assert held is not None and held.state == "held" and held.counts["users"]["deleted"] == 5
    assert await store.publish_walk(walk("w1", "published", finished=T0), ["users"]) == 1


async def test_trim_drops_old_changes_and_raises_the_floor(store: Store) -> None:
    await publish(store, "w1", {"u1": "h", "u2": "h"}, at=T0)
    await store.save_walk(walk("w2"))
    await store.stage_changes("app-7", "w2", [("users", "u3", "created")])
    later = T0 + timedelta(days=40)
    await store.publish_walk(walk("w2", "published", finished=later), [])
    assert await store.changes_bounds("app-7") == (0, 3)
    assert await store.trim_changes("app-7", T0 + timedelta(days=10)) == 2
    assert await store.changes_bounds("app-7") == (2, 3)
    assert [c.seq for c in await store.read_changes("app-7", 0, 10)] == [3]
    assert await store.trim_changes("app-7", T0 + timedelta(days=10)) == 0


async def test_forget_removes_everything_of_the_connection(store: Store) -> None:
    await publish(store, "w1", {"u1": "h"})
    await store.forget_changes("app-7")
    assert await store.get_walk("app-7") is None
    assert await store.known_count("app-7", "users") == 0
    assert await store.read_changes("app-7", 0, 10) == []


async def test_a_second_instance_sees_the_published_walk(store: Store, backend: Backend) -> None:
    await publish(store, "w1", {"u1": "h"})
    other = backend.make()
    await other.open()
    try:
        assert [c.sourced_id for c in await other.read_changes("app-7", 0, 5)] == ["u1"]
    finally:
        await other.close()


async def test_a_store_connections_change_feed_keys_round_trip(store: Store) -> None:
    from tests.store.test_connections import connection, district

    await store.add_district(district())
    plain = connection("app-1")
    feed = connection("app-2", changes=True, changes_at="23:15", max_deletions="250")
    for record in (plain, feed):
        await store.add_connection(record, district_in_store=True)
    assert await store.get_connection("app-1") == plain
    assert await store.get_connection("app-2") == feed
    resolved = await store.resolve_connection("app-2")
    assert resolved is not None and resolved[0] == feed
    await store.update_connection(replace(feed, changes=False, max_deletions="5%"))
    updated = await store.get_connection("app-2")
    assert updated is not None and (updated.changes, updated.max_deletions) == (False, "5%")


async def test_a_published_walks_key_id_is_the_hashes_key(store: Store) -> None:
    assert await store.hashes_key("app-7") is None
    await store.save_walk(walk("w1", key_id="k1"))
    kept = await store.get_walk("app-7")
    assert kept is not None and kept.key_id == "k1"
    await store.publish_walk(walk("w1", "published", finished=T0, key_id="k1"), ["users"])
    assert await store.hashes_key("app-7") == "k1"
    await store.save_walk(walk("w2", key_id="k2"))
    await store.save_walk(walk("w2", "failed", key_id="k2"))
    assert await store.hashes_key("app-7") == "k1"  # a walk that did not publish
