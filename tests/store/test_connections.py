"""The districts-and-connections role of the store (``ConnectionStore`` in
``proxy/store/base.py``), run unchanged on every backend (sqlite file, real redis-server):
what ``districts ...``, ``connections ...``, the admin API and the gateway's resolution rely on.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date

import pytest

from proxy.errors import Conflict, NotFound
from proxy.store import CheckResult, Store
from proxy.store.base import ConnectionRecord, DistrictRecord
from tests.store.conftest import SECOND, T0, Backend


def district(name: str = "springfield", **fields: object) -> DistrictRecord:
    values: dict[str, object] = {
        "base_url": f"https://{name}.example/api",
        "created": T0,
        "updated": T0,
        "version": 1,  # what an added record is stored at
    }
    values.update(fields)
    return DistrictRecord(name=name, **values)  # type: ignore[arg-type]


def connection(app_id: str, **fields: object) -> ConnectionRecord:
    values: dict[str, object] = {
        "vendor": "acme",
        "district": "springfield",
        "key": f"key-{app_id}",
        "secret": f"orp1.sealed.{app_id}",
        "scopes": ("roster-core.readonly",),
        "created": T0,
        "updated": T0,
        "version": 1,  # what an added record is stored at
    }
    values.update(fields)
    return ConnectionRecord(app_id=app_id, **values)  # type: ignore[arg-type]


# -- districts ----------------------------------------------------------------------------------


async def test_district_add_get_list_round_trip_every_field(store: Store) -> None:
    full = district(
        "shelbyville",
        auth="oauth2",
        token_url="https://shelbyville.example/oauth2/token",
        signature_method="HMAC-SHA1",
        vendor_authorization=True,
        versions=("v1p1",),
        max_connections=5,
        max_wait="10s",
        rate_limit="600/m",
        timezone="America/Chicago",
        windows='[{"days":"mon-fri","from":"07:00","to":"16:00","max_connections":1}]',
        pauses='[{"from":"2027-06-20","to":"2027-08-01","reason":"summer rollover"}]',
    )
    bare = district("springfield")
    await store.add_district(full)
    await store.add_district(bare)

    assert await store.get_district("shelbyville") == full
    assert await store.get_district("springfield") == bare
    assert await store.get_district("nowhere") is None
    assert [d.name for d in await store.list_districts()] == ["shelbyville", "springfield"]


async def test_district_name_taken_is_a_conflict_and_changes_nothing(store: Store) -> None:
    first = district()
    await store.add_district(first)
    with pytest.raises(Conflict, match="springfield"):
        await store.add_district(replace(first, base_url="https://evil.example"))
    assert await store.get_district("springfield") == first


async def test_district_update_keeps_created_and_clears_unset_fields(store: Store) -> None:
    await store.add_district(district(max_connections=5, rate_limit="10/s"))
    changed = district(
        base_url="https://new.example/api", updated=T0 + SECOND, created=T0 + 9 * SECOND
    )
    await store.update_district(changed)
    got = await store.get_district("springfield")
    assert got == replace(changed, created=T0, version=2)
    assert got.max_connections is None and got.rate_limit is None
    with pytest.raises(NotFound):
        await store.update_district(district("nowhere"))
    assert await store.get_district("nowhere") is None


async def test_district_in_use_cannot_be_removed(store: Store) -> None:
    await store.add_district(district())
    await store.add_connection(connection("app-2"), district_in_store=True)
    await store.add_connection(connection("app-1"), district_in_store=True)
    with pytest.raises(Conflict, match="in use by connection app-1"):
        await store.remove_district("springfield")
    assert await store.get_district("springfield") is not None

    await store.remove_connection("app-1")
    await store.remove_connection("app-2")
    await store.remove_district("springfield")
    assert await store.get_district("springfield") is None
    assert await store.list_districts() == []
    with pytest.raises(NotFound):
        await store.remove_district("springfield")


# -- connections --------------------------------------------------------------------------------


async def test_connection_add_get_round_trip_every_field(store: Store) -> None:
    await store.add_district(district())
    full = connection(
        "app-7",
        scopes=("gradebook.readonly", "roster-core.readonly"),
        enabled=False,
        expires=date(2027, 6, 30),
    )
    await store.add_connection(full, district_in_store=True)
    got = await store.get_connection("app-7")
    assert got == full
    assert got.source == "store" and got.created.tzinfo is not None
    assert await store.get_connection("app-8") is None


async def test_connection_to_a_district_outside_the_store(store: Store) -> None:
    # A district of the TOML file: the caller checked it; the store takes its word.
    await store.add_connection(connection("app-1", district="from-toml"), district_in_store=False)
    found = await store.resolve_connection("app-1")
    assert found is not None and found[1] is None
    # Required in the store but missing: refused, nothing written.
    with pytest.raises(NotFound, match="from-toml"):
        await store.add_connection(
            connection("app-2", district="from-toml"), district_in_store=True
        )
    assert await store.get_connection("app-2") is None


async def test_connection_appid_taken_is_a_conflict_and_changes_nothing(store: Store) -> None:
    await store.add_district(district())
    await store.add_district(district("other"))
    first = connection("app-1")
    await store.add_connection(first, district_in_store=True)
    with pytest.raises(Conflict, match="app-1"):
        await store.add_connection(
            connection("app-1", vendor="globex", district="other"), district_in_store=True
        )
    assert await store.get_connection("app-1") == first
    assert await store.list_connections(vendor="globex") == []
    await store.remove_district("other")  # the refused add left no user behind


async def test_resolve_reads_the_connection_and_its_district(store: Store) -> None:
    d = district(max_connections=3, pauses='[{"from":"2027-06-20","to":"2027-08-01","reason":"r"}]')
    c = connection("app-1")
    await store.add_district(d)
    await store.add_connection(c, district_in_store=True)
    assert await store.resolve_connection("app-1") == (c, d)
    assert await store.resolve_connection("app-2") is None


async def test_update_replaces_fields_and_keeps_created_and_district(store: Store) -> None:
    await store.add_district(district())
    await store.add_connection(
        connection("app-1", expires=date(2027, 1, 1)), district_in_store=True
    )
    renewed = connection(
        "app-1",
        key="new-key",
        secret="orp1.sealed.new",
        scopes=("roster.readonly",),
        enabled=False,
        expires=None,
        vendor="globex",
        created=T0 + 5 * SECOND,
        updated=T0 + SECOND,
    )
    await store.update_connection(renewed)
    assert await store.get_connection("app-1") == replace(renewed, created=T0, version=2)
    # The vendor's listing follows the new vendor.
    assert [c.app_id for c in await store.list_connections(vendor="globex")] == ["app-1"]
    assert await store.list_connections(vendor="acme") == []
    with pytest.raises(NotFound):
        await store.update_connection(connection("app-9"))
    assert await store.get_connection("app-9") is None


async def test_remove_connection(store: Store) -> None:
    await store.add_district(district())
    await store.add_connection(connection("app-1"), district_in_store=True)
    await store.remove_connection("app-1")
    assert await store.get_connection("app-1") is None
    assert await store.resolve_connection("app-1") is None
    assert await store.list_connections() == []
    with pytest.raises(NotFound):
        await store.remove_connection("app-1")
    # The appId is free again, without the removed connection's check history.
    await store.add_connection(connection("app-1"), district_in_store=True)
    await store.add_check_result(CheckResult(app_id="app-1", at=T0, document={"ok": True}))
    await store.remove_connection("app-1")
    await store.add_connection(connection("app-1"), district_in_store=True)
    assert await store.list_check_results("app-1") == []
    assert (await store.last_check_results(["app-1"])).get("app-1", []) == []


async def test_list_pages_in_appid_order_per_vendor(store: Store) -> None:
    await store.add_district(district())
    ids = [f"app-{i:03d}" for i in range(25)]
    for i, app_id in enumerate(reversed(ids)):
        vendor = "acme" if i % 2 else "globex"
        await store.add_connection(connection(app_id, vendor=vendor), district_in_store=True)

    seen: list[str] = []
    after = ""
    while True:
        page = await store.list_connections(after=after, limit=10)
        seen += [c.app_id for c in page]
        if len(page) < 10:
            break
        after = page[-1].app_id
    assert seen == ids
    acme = [c.app_id for c in await store.list_connections(vendor="acme", limit=100)]
    assert acme == sorted(acme) and len(acme) == 12
    assert all(c.vendor == "acme" for c in await store.list_connections(vendor="acme"))
    assert await store.list_connections(limit=0) == []
    assert await store.list_connections(after="app-024") == []


async def test_concurrent_adds_of_one_appid_let_exactly_one_win(
    store: Store, backend: Backend
) -> None:
    await store.add_district(district())
    others = [backend.make() for _ in range(3)]
    try:
        stores = [store, *others]

        async def add(i: int) -> bool:
            try:
                await stores[i % 4].add_connection(
                    connection("race", key=f"k{i}"), district_in_store=True
                )
            except Conflict:
                return False
            return True

        results = await asyncio.gather(*(add(i) for i in range(12)))
        assert sum(results) == 1
        winner = await store.get_connection("race")
        assert winner is not None and winner.key == f"k{results.index(True)}"
    finally:
        for other in others:
            await other.close()


async def test_another_instance_sees_changes_at_once(store: Store, backend: Backend) -> None:
    other = backend.make()
    await other.open()
    try:
        await store.add_district(district())
        await store.add_connection(connection("app-1"), district_in_store=True)
        found = await other.resolve_connection("app-1")
        assert found is not None and found[0].key == "key-app-1"
        await other.update_connection(connection("app-1", key="rotated"))
        again = await store.resolve_connection("app-1")
        assert again is not None and again[0].key == "rotated"
        await other.remove_connection("app-1")
        assert await store.resolve_connection("app-1") is None
    finally:
        await other.close()


async def test_a_schema_4_sqlite_file_gains_the_courtesy_columns(tmp_path) -> None:
    """A store written before windows and pauses existed opens, its districts read with
    none, and takes them from then on."""
    import sqlite3

    from proxy.store.sqlite import _MIGRATIONS, SqliteStore

    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version in range(1, 5):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (4)")
        conn.execute(
            "INSERT INTO districts (name, base_url, auth, signature_method, vendor_authorization, "
            "versions, created, updated) VALUES ('old', 'https://old.example', 'oauth1', "
            "'HMAC-SHA256', 0, 'v1p1', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
        )
    async with SqliteStore(path) as store:
        old = await store.get_district("old")
        assert old is not None and old.timezone is None and old.pauses is None
        await store.update_district(replace(old, timezone="America/Chicago", pauses="[]"))
        again = await store.get_district("old")
        assert again is not None and again.timezone == "America/Chicago"
