"""The token role of the store (``TokenStore`` in ``proxy/store/base.py``), run unchanged on
every backend (sqlite file, real redis-server): what issue, rotation, revocation and the
gateway's look-ups rely on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from proxy.store import Store
from proxy.tokens import issue, rotate
from tests.store.conftest import ROOT, SECOND, T0, Backend, record

# -- tokens -------------------------------------------------------------------------------------


async def test_add_then_get_returns_the_same_record(store: Store) -> None:
    full = record(
        "full00000001",
        expires=T0 + timedelta(days=30),
        last_used=T0 + timedelta(minutes=5, microseconds=1),
    )
    bare = record("bare00000001", vendor="globex")
    await store.add_token(full)
    await store.add_token(bare)

    assert await store.get_token("full00000001") == full
    assert await store.get_token("bare00000001") == bare
    got = await store.get_token("full00000001")
    assert got is not None and got.created.tzinfo is UTC and got.created.microsecond == 123457


async def test_times_in_other_zones_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    await store.add_token(record("zone00000001", created=T0.astimezone(plus_two)))
    got = await store.get_token("zone00000001")
    assert got is not None and got.created == T0 and got.created.utcoffset() == timedelta(0)


async def test_get_of_an_unknown_id_is_none(store: Store) -> None:
    assert await store.get_token("nope00000000") is None


async def test_duplicate_id_is_refused_and_the_first_record_stays(store: Store) -> None:
    first = record("dupe00000001")
    await store.add_token(first)
    with pytest.raises(ValueError, match="already exists"):
        await store.add_token(replace(first, vendor="globex"))
    assert await store.get_token("dupe00000001") == first
    assert [r.id for r in await store.list_tokens("globex")] == []


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.add_token(record("naiv00000001", created=datetime(2026, 1, 1)))
    assert await store.get_token("naiv00000001") is None


async def test_list_is_oldest_first_ties_by_id_revoked_included(store: Store) -> None:
    await store.add_token(record("c00000000003", created=T0 + 2 * SECOND))
    await store.add_token(record("b00000000002", created=T0))
    await store.add_token(record("x00000000009", vendor="globex", created=T0 + SECOND))
    await store.add_token(record("a00000000001", created=T0))  # same instant as b: id decides
    await store.add_token(record("d00000000004", created=T0 + 3 * SECOND, revoked=T0))

    everything = [r.id for r in await store.list_tokens()]
    assert everything == [
        "a00000000001",
        "b00000000002",
        "x00000000009",
        "c00000000003",
        "d00000000004",
    ]
    acme = [r.id for r in await store.list_tokens("acme")]
    assert acme == ["a00000000001", "b00000000002", "c00000000003", "d00000000004"]
    assert [r.id for r in await store.list_tokens("globex")] == ["x00000000009"]
    assert await store.list_tokens("nobody") == []


async def test_revoke_token(store: Store) -> None:
    await store.add_token(record("rev000000001"))
    await store.add_token(record("keep00000001"))

    assert await store.revoke_token("rev000000001", T0 + SECOND) is True
    revoked = await store.get_token("rev000000001")
    assert revoked is not None and revoked.revoked == T0 + SECOND
    assert not revoked.active_at(T0 + SECOND) and revoked.active_at(T0)

    # Already revoked: False, and the first revocation time stays.
    assert await store.revoke_token("rev000000001", T0 + 5 * SECOND) is False
    again = await store.get_token("rev000000001")
    assert again is not None and again.revoked == T0 + SECOND

    assert await store.revoke_token("nope00000000", T0) is False
    assert await store.get_token("nope00000000") is None
    kept = await store.get_token("keep00000001")
    assert kept is not None and kept.revoked is None


async def test_revoke_vendor_revokes_every_unrevoked_token_of_that_vendor_only(
    store: Store,
) -> None:
    await store.add_token(record("b00000000002", created=T0 + SECOND))
    await store.add_token(record("a00000000001", created=T0))
    await store.add_token(record("old000000001", created=T0 - SECOND, revoked=T0 - SECOND))
    await store.add_token(record("exp000000001", created=T0 + 2 * SECOND, expires=T0))
    await store.add_token(record("oth000000001", vendor="globex"))
    at = T0 + 10 * SECOND

    assert await store.revoke_vendor("acme", at) == ["a00000000001", "b00000000002", "exp000000001"]

    by_id = {r.id: r for r in await store.list_tokens()}
    assert by_id["a00000000001"].revoked == at
    assert by_id["exp000000001"].revoked == at
    assert by_id["old000000001"].revoked == T0 - SECOND  # its own time stays
    assert by_id["oth000000001"].revoked is None
    assert await store.revoke_vendor("acme", at) == []
    assert await store.revoke_vendor("nobody", at) == []


async def test_expire_vendor_is_rotation_grace(store: Store) -> None:
    grace_end = T0 + timedelta(hours=1)
    await store.add_token(record("forever00001", created=T0 - 4 * SECOND))
    await store.add_token(
        record("later0000001", created=T0 - 3 * SECOND, expires=T0 + timedelta(days=1))
    )
    await store.add_token(
        record("sooner000001", created=T0 - 2 * SECOND, expires=T0 + timedelta(minutes=5))
    )
    await store.add_token(record("exactly00001", created=T0 - 2 * SECOND, expires=grace_end))
    await store.add_token(record("revoked00001", created=T0 - SECOND, revoked=T0 - SECOND))
    await store.add_token(record("newtoken0001", created=T0))
    await store.add_token(record("globex000001", vendor="globex", created=T0 - 5 * SECOND))

    ended = await store.expire_vendor("acme", grace_end, keep="newtoken0001")

    assert ended == ["forever00001", "later0000001"]
    by_id = {r.id: r for r in await store.list_tokens()}
    assert by_id["forever00001"].expires == grace_end
    assert by_id["later0000001"].expires == grace_end
    assert by_id["sooner000001"].expires == T0 + timedelta(minutes=5)  # earlier expiry stays
    assert by_id["exactly00001"].expires == grace_end
    assert by_id["revoked00001"].expires is None and by_id["revoked00001"].revoked == T0 - SECOND
    assert by_id["newtoken0001"].expires is None and by_id["newtoken0001"].revoked is None
    assert by_id["globex000001"].expires is None
    # Old tokens work until the grace ends, then stop; the new one goes on.
    assert by_id["forever00001"].active_at(grace_end - SECOND)
    assert not by_id["forever00001"].active_at(grace_end)
    assert by_id["newtoken0001"].active_at(grace_end + timedelta(days=365))
    # A second rotation with a later end leaves the first grace alone.
    assert await store.expire_vendor(
        "acme", grace_end + timedelta(hours=1), keep="other0000001"
    ) == ["newtoken0001"]
    still = await store.get_token("forever00001")
    assert still is not None and still.expires == grace_end


async def test_rotate_and_issue_through_proxy_tokens(store: Store) -> None:
    old = await issue(store, "acme", ttl=None, interface="cli")
    new, ended = await rotate(store, "acme", grace=timedelta(0), interface="admin")
    assert ended == [old.record.id]
    now = datetime.now(UTC) + SECOND
    assert (await store.count_active(now)) == {"acme": 1}
    actions = [(e.action, e.interface, e.token_id) for e in await store.list_audit()]
    assert actions == [
        ("token.issue", "cli", old.record.id),
        ("token.rotate", "admin", new.record.id),
    ]


async def test_jwt_not_before_only_moves_forward_per_vendor(store: Store, backend: Backend) -> None:
    assert await store.get_vendor_auth("acme") is None
    await store.set_jwt_not_before("acme", T0)
    got = await store.get_vendor_auth("acme")
    assert got is not None and got.jwt_not_before == T0 and got.secret_fingerprint is None
    await store.set_jwt_not_before("acme", T0 - SECOND)  # an older cut changes nothing
    await store.set_jwt_not_before("acme", T0.astimezone(timezone(timedelta(hours=-5))))
    got = await store.get_vendor_auth("acme")
    assert got is not None and got.jwt_not_before == T0
    await store.set_jwt_not_before("acme", T0 + SECOND)
    assert (await store.get_vendor_auth("acme")).jwt_not_before == T0 + SECOND  # type: ignore[union-attr]
    assert await store.get_vendor_auth("other") is None
    with pytest.raises(ValueError):
        await store.set_jwt_not_before("acme", datetime(2026, 3, 1))

    # Another instance (a replica, the CLI) sees the cut.
    other = backend.make()
    await other.open()
    try:
        seen = await other.get_vendor_auth("acme")
        assert seen is not None and seen.jwt_not_before == T0 + SECOND
    finally:
        await other.close()


async def test_secret_fingerprint_with_and_without_a_cut(store: Store) -> None:
    await store.set_secret_fingerprint("acme", "fp-1")
    got = await store.get_vendor_auth("acme")
    assert got is not None and got.secret_fingerprint == "fp-1" and got.jwt_not_before is None
    await store.set_secret_fingerprint("acme", "fp-2", not_before=T0)
    got = await store.get_vendor_auth("acme")
    assert got is not None and (got.secret_fingerprint, got.jwt_not_before) == ("fp-2", T0)
    # A later fingerprint without a cut keeps the cut; an older cut never replaces it.
    await store.set_secret_fingerprint("acme", "fp-3", not_before=T0 - SECOND)
    got = await store.get_vendor_auth("acme")
    assert got is not None and (got.secret_fingerprint, got.jwt_not_before) == ("fp-3", T0)
    await store.set_jwt_not_before("acme", T0 + SECOND)
    got = await store.get_vendor_auth("acme")
    assert got is not None and (got.secret_fingerprint, got.jwt_not_before) == (
        "fp-3",
        T0 + SECOND,
    )
    with pytest.raises(ValueError):
        await store.set_secret_fingerprint("acme", "")


async def test_touch_records_the_latest_use_only(store: Store) -> None:
    await store.add_token(record("used00000001"))
    await store.add_token(record("used00000002"))
    later = T0 + timedelta(minutes=10)

    await store.touch({"used00000001": later, "used00000002": T0 + SECOND, "gone00000000": later})
    await store.touch({"used00000001": T0 + timedelta(minutes=1)})  # older: ignored
    await store.touch({})

    one, two = await store.get_token("used00000001"), await store.get_token("used00000002")
    assert one is not None and one.last_used == later
    assert two is not None and two.last_used == T0 + SECOND
    assert await store.get_token("gone00000000") is None  # touch never creates a token
    assert len(await store.list_tokens()) == 2


async def test_count_active(store: Store) -> None:
    at = T0 + timedelta(hours=1)
    await store.add_token(record("live00000001"))
    await store.add_token(record("live00000002", expires=at + SECOND))
    await store.add_token(record("ends00000001", expires=at))  # ends exactly now: not active
    await store.add_token(record("expd00000001", expires=T0))
    await store.add_token(record("revd00000001"))
    await store.add_token(record("later0000001", revoked=at + timedelta(days=1)))  # revoked later
    await store.add_token(record("glbx00000001", vendor="globex"))
    await store.revoke_token("revd00000001", T0)
    await store.revoke_vendor("globex", T0)

    assert await store.count_active(at) == {"acme": 3, "globex": 0}
    assert await store.count_active(T0 - SECOND) == {"acme": 6, "globex": 1}
    await store.expire_vendor("acme", at, keep="live00000001")
    # live00000001 is kept; later0000001 has a revocation of its own, which rotation leaves be.
    assert await store.count_active(at) == {"acme": 2, "globex": 0}
    assert await store.count_active(at - SECOND) == {"acme": 4, "globex": 0}


async def test_empty_store(store: Store) -> None:
    assert await store.list_tokens() == []
    assert await store.count_active(T0) == {}
    assert await store.list_audit() == []
    await store.ping()


async def test_another_process_writes_while_this_one_writes(store: Store, backend: Backend) -> None:
    """The CLI's ``tokens issue`` in one process while a proxy writes in another."""
    url = f"sqlite://{backend.target}" if backend.name == "sqlite" else backend.target
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from proxy.store import open_store
        from proxy.tokens import issue

        async def main():
            store = open_store({url!r})
            await store.open()
            for _ in range(40):
                await issue(store, "child", ttl=None, interface="cli")
            await store.close()

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stderr=subprocess.PIPE
    )
    for _ in range(40):
        await issue(store, "parent", ttl=None, interface="admin")
        await asyncio.sleep(0)
    _, stderr = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 0, stderr.decode()

    assert await store.count_active(datetime.now(UTC) + SECOND) == {"child": 40, "parent": 40}
    assert len(await store.list_audit()) == 80


# -- scale --------------------------------------------------------------------------------------


async def test_100k_tokens_lookup_by_id(store: Store, backend: Backend) -> None:
    records = [
        record(f"t{i:011d}", vendor=f"v{i % 50}", created=T0 + timedelta(microseconds=i))
        for i in range(100_000)
    ]
    await backend.bulk_add(store, records)

    for i in (0, 1, 49_999, 99_999):
        assert await store.get_token(f"t{i:011d}") == records[i]
    assert await store.get_token("t00000100000") is None
    counts = await store.count_active(T0)
    assert sum(counts.values()) == 100_000 and len(counts) == 50
    # The index answers per vendor, in order, without the other 98,000.
    v7 = await store.list_tokens("v7")
    assert len(v7) == 2_000 and v7[0].id == "t00000000007" and v7[-1].id == "t00000099957"
