"""The access ledger role of the store (``LedgerStore``), run unchanged on every backend:
counts add up across batches and processes, field names join, filters and pruning by day."""

from __future__ import annotations

from datetime import date

from proxy.sharing.ledger import Ledger
from proxy.store import Store
from proxy.store.base import LedgerRow
from tests.store.conftest import Backend

DAY = date(2026, 9, 1)


def row(app: str = "app-7", day: date = DAY, collection: str = "users", **kw: object) -> LedgerRow:
    values: dict[str, object] = {
        "vendor": "acme",
        "district": "springfield",
        "requests": 2,
        "records": 10,
        "bytes": 1000,
        "status": {"2xx": 2},
        "fields": ("givenName", "sourcedId"),
    }
    values.update(kw)
    return LedgerRow(app=app, day=day, collection=collection, **values)  # type: ignore[arg-type]


async def test_batches_add_up_and_fields_join(store: Store, backend: Backend) -> None:
    await store.add_ledger([row(), row(collection="classes", fields=("title",))])
    # A second process (a worker, a replica) flushes its own counts for the same day.
    other = backend.make()
    await other.open()
    try:
        await other.add_ledger(
            [row(requests=1, records=0, bytes=50, status={"4xx": 1}, fields=("email",))]
        )
    finally:
        await other.close()
    rows = await store.list_ledger()
    assert [(r.day, r.app, r.collection) for r in rows] == [
        (DAY, "app-7", "classes"),
        (DAY, "app-7", "users"),
    ]
    users = rows[1]
    assert (users.requests, users.records, users.bytes) == (3, 10, 1050)
    assert users.status == {"2xx": 2, "4xx": 1}
    assert users.fields == ("email", "givenName", "sourcedId")
    assert users.as_json()["day"] == "2026-09-01"


async def test_filters_by_app_vendor_and_day(store: Store) -> None:
    await store.add_ledger(
        [
            row(),
            row(app="app-8", vendor="other"),
            row(day=date(2026, 8, 1)),
        ]
    )
    assert {r.app for r in await store.list_ledger(app="app-8")} == {"app-8"}
    assert {r.vendor for r in await store.list_ledger(vendor="acme")} == {"acme"}
    since = await store.list_ledger(since=DAY)
    assert {r.day for r in since} == {DAY} and len(since) == 2
    assert await store.list_ledger(app="nobody") == []
    assert await store.prune_ledger(DAY) == 1
    assert {r.day for r in await store.list_ledger()} == {DAY}


async def test_the_in_memory_ledger_flushes_once_and_keeps_counts_on_failure(
    store: Store,
) -> None:
    ledger = Ledger()
    ledger.count("app-7", "acme", "springfield", "users", 200, 100, 3, ["givenName"])
    ledger.count("app-7", "acme", "springfield", "users", 404, 20)
    await ledger.flush(store, 400)
    await ledger.flush(store, 400)  # nothing new: nothing added twice
    (only,) = await store.list_ledger()
    assert (only.requests, only.records, only.bytes) == (2, 3, 120)
    assert only.status == {"2xx": 1, "4xx": 1}

    class Down:
        async def add_ledger(self, rows: list[LedgerRow]) -> None:
            raise OSError("down")

    ledger.count("app-7", "acme", "springfield", "users", 200, 5, 1)
    try:
        await ledger.flush(Down(), 400)  # type: ignore[arg-type]
    except OSError:
        pass
    await ledger.flush(store, 400)
    (only,) = await store.list_ledger()
    assert only.requests == 3


async def test_a_sqlite_file_from_before_the_ledger_gets_it(tmp_path: object) -> None:
    import sqlite3
    from pathlib import Path

    from proxy.store.sqlite import SqliteStore

    path = str(Path(str(tmp_path)) / "old.db")
    async with SqliteStore(path) as store:
        await store.ping()
    with sqlite3.connect(path) as conn:  # as a proxy without the sharing policy left it
        conn.execute("DROP TABLE ledger")
        conn.execute("ALTER TABLE connections DROP COLUMN drop_fields")
    async with SqliteStore(path) as store:
        await store.add_ledger([row()])
        assert len(await store.list_ledger()) == 1
    with sqlite3.connect(path) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(connections)")}
    assert "drop_fields" in columns
