"""The store conformance suite, continued: outstanding intake links, the one step that spends a
link and saves what it connected, and console sessions (THREAT_MODEL.md "The intake link",
docs/http-api.md "Console"), run unchanged on sqlite and on redis-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from proxy.errors import Conflict, NotFound
from proxy.store import Store
from proxy.store.base import ConnectionRecord, DistrictRecord, IntakeSave
from tests.store.conftest import Backend
from tests.store.test_checks_and_invites import NOW, invite


async def save(
    store: Store, token_hash: str, at: datetime, d: DistrictRecord, c: ConnectionRecord
) -> bool:
    return await store.save_intake(IntakeSave(token_hash, at, d, c))


def district(name: str = "shelbyville", base_url: str = "https://a.example") -> DistrictRecord:
    return DistrictRecord(name=name, base_url=base_url, created=NOW, updated=NOW)


def connection(
    app_id: str = "app-9", district_name: str = "shelbyville", **kw: object
) -> ConnectionRecord:
    values: dict[str, object] = {
        "app_id": app_id,
        "vendor": "acme",
        "district": district_name,
        "key": "k",
        "secret": "sealed",
        "scopes": ("roster-core.readonly",),
        "created": NOW,
        "updated": NOW,
    }
    values.update(kw)
    return ConnectionRecord(**values)  # type: ignore[arg-type]


async def test_outstanding_invites_are_listed_and_revoked(store: Store) -> None:
    await store.add_invite(invite("a" * 64, app_id="app-1", district_name="d1"))
    await store.add_invite(
        invite("b" * 64, app_id="app-2", district_name="d2", created=NOW + timedelta(seconds=1))
    )
    await store.add_invite(invite("c" * 64, app_id="app-3", expires=NOW - timedelta(seconds=1)))
    await store.add_invite(invite("d" * 64, app_id="app-4"))
    assert await store.spend_invite("d" * 64, NOW)
    listed = await store.list_invites(NOW)
    assert [i.app_id for i in listed] == ["app-1", "app-2"]
    assert await store.revoke_invites("app-1", NOW) == 1
    assert await store.revoke_invites("app-1", NOW) == 0
    assert [i.app_id for i in await store.list_invites(NOW)] == ["app-2"]
    got = await store.get_invite("a" * 64)
    assert got is not None and not got.usable_at(NOW)


async def test_save_intake_writes_district_connection_and_spends_in_one_step(store: Store) -> None:
    await store.add_invite(invite())
    assert await save(store, "h" * 64, NOW, district(), connection())
    saved = await store.resolve_connection("app-9")
    assert saved is not None and saved[1] is not None
    assert saved[1].base_url == "https://a.example"
    assert await store.list_invites(NOW) == []
    # The link is spent: a second save is refused and writes nothing.
    with pytest.raises(NotFound):
        await save(store, "h" * 64, NOW, district(base_url="https://evil.example"), connection())
    again = await store.get_district("shelbyville")
    assert again is not None and again.base_url == "https://a.example"


async def test_save_intake_never_changes_a_district_another_connection_uses(store: Store) -> None:
    # Two outstanding links name one district: the first saves, the second is refused.
    await store.add_invite(invite("a" * 64, app_id="app-1"))
    await store.add_invite(invite("b" * 64, app_id="app-2"))
    await save(store, "a" * 64, NOW, district(), connection("app-1"))
    with pytest.raises(Conflict):
        await save(
            store, "b" * 64, NOW, district(base_url="https://evil.example"), connection("app-2")
        )
    kept = await store.get_district("shelbyville")
    assert kept is not None and kept.base_url == "https://a.example"
    assert await store.get_connection("app-2") is None
    left = await store.get_invite("b" * 64)
    assert left is not None and left.spent is None  # refused: nothing written, link not spent


async def test_save_intake_renews_the_invites_own_connection(store: Store) -> None:
    await store.add_district(district())
    await store.add_connection(connection(key="old"), district_in_store=True)
    await store.add_invite(invite())
    later = NOW + timedelta(seconds=5)
    new = await save(
        store,
        "h" * 64,
        NOW,
        district(base_url="https://b.example"),
        connection(key="new", updated=later),
    )
    assert new is False
    got = await store.get_connection("app-9")
    assert got is not None and got.key == "new" and got.created == NOW
    # Another vendor's appId of the same name is not the invite's: refused.
    await store.add_invite(invite("x" * 64))
    with pytest.raises(Conflict):
        await save(store, "x" * 64, NOW, district(), connection(vendor="other"))


async def test_racing_saves_of_two_links_for_one_district_let_one_win(store: Store) -> None:
    await store.add_invite(invite("a" * 64, app_id="app-1"))
    await store.add_invite(invite("b" * 64, app_id="app-2"))
    results = await asyncio.gather(
        save(store, "a" * 64, NOW, district(), connection("app-1")),
        save(store, "b" * 64, NOW, district(), connection("app-2")),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Conflict) for r in results) == 1


async def test_console_sessions_end_for_every_instance(store: Store, backend: Backend) -> None:
    now = datetime.now(UTC)
    await store.add_session("s1", now + timedelta(hours=1))
    await store.add_session("s2", now + timedelta(hours=1))
    assert await store.session_active("s1", now)
    assert not await store.session_active("nope", now)
    assert not await store.session_active("s1", now + timedelta(hours=2))
    other = backend.make()
    await other.open()
    try:
        assert await other.session_active("s1", now)
        await other.end_session("s1")
        await other.end_session("s1")  # twice is fine
    finally:
        await other.close()
    assert not await store.session_active("s1", now)
    assert await store.session_active("s2", now)
