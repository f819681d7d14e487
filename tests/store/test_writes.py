"""Store writes never lose another writer's change, and a change and its audit event are
kept together or not at all (docs/commands.md, "Audit"; ``proxy/store/base.py``). Run on
every backend (sqlite file, real redis-server), with real concurrent writers: separate store
instances on the same data, as separate processes and replicas are."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest
import redis

from proxy.connections import managed
from proxy.connections.managed import ConfigEntries
from proxy.errors import NotFound, Stale, StoreUnavailable
from proxy.store import Store
from proxy.store.base import AuditEvent, ConnectionRecord
from proxy.store.crypto import Binding, SecretBox, new_key, parse_key
from tests.store.conftest import SECOND, T0, Backend, record
from tests.store.test_connections import connection, district

CATALOG = ConfigEntries(vendors=frozenset({"acme"}))


def event(action: str, **detail: str) -> AuditEvent:
    return AuditEvent(at=T0, action=action, interface="cli", detail=dict(detail))


# -- compare-and-set --------------------------------------------------------------------------


async def test_an_update_from_a_stale_read_changes_nothing(store: Store) -> None:
    await store.add_district(district())
    await store.add_connection(connection("app-1"), district_in_store=True)
    read = await store.get_connection("app-1")
    assert read is not None and read.version == 1
    await store.update_connection(replace(read, enabled=False, updated=T0 + SECOND))
    now = await store.get_connection("app-1")
    assert now is not None and now.version == 2 and not now.enabled
    with pytest.raises(Stale, match="app-1"):  # the first read, written back: refused
        await store.update_connection(replace(read, key="stale", updated=T0 + 2 * SECOND))
    assert await store.get_connection("app-1") == now
    with pytest.raises(NotFound):
        await store.update_connection(connection("app-9"))

    d = await store.get_district("springfield")
    assert d is not None and d.version == 1
    await store.update_district(replace(d, max_connections=3), reseal=None)
    with pytest.raises(Stale, match="springfield"):
        await store.update_district(replace(d, base_url="https://evil.example"))
    got = await store.get_district("springfield")
    assert got is not None and got.version == 2 and got.base_url == d.base_url


async def test_a_district_update_reseals_exactly_its_connections_in_one_step(store: Store) -> None:
    await store.add_district(district())
    await store.add_connection(connection("app-1"), district_in_store=True)
    await store.add_connection(connection("app-2"), district_in_store=True)
    d = await store.get_district("springfield")
    assert d is not None
    moved = replace(d, base_url="https://moved.example/api", updated=T0 + SECOND)
    # A connection missing from the re-seal, or read at another version: nothing written.
    for reseal in ({"app-1": (1, "orp2.x.new1")}, {"app-1": (1, "a"), "app-2": (7, "b")}):
        with pytest.raises(Stale):
            await store.update_district(moved, reseal=reseal)
        assert await store.get_district("springfield") == d
        one = await store.get_connection("app-1")
        assert one is not None and one.secret == "orp1.sealed.app-1" and one.version == 1
    await store.update_district(moved, reseal={"app-1": (1, "new-1"), "app-2": (1, "new-2")})
    got = await store.get_district("springfield")
    assert got is not None and got.base_url == moved.base_url and got.version == 2
    for app_id in ("app-1", "app-2"):
        conn = await store.get_connection(app_id)
        assert conn is not None and conn.secret == f"new-{app_id[-1]}" and conn.version == 2


async def _seed(store: Store, box: SecretBox, count: int) -> None:
    await managed.add_district(
        store, CATALOG, "springfield", {"base_url": "https://springfield.example"}, interface="cli"
    )
    for i in range(count):
        table = {
            "vendor": "acme",
            "district": "springfield",
            "key": f"k{i}",
            "secret": f"secret-{i}-0123456789",
            "scopes": ["roster.readonly"],
        }
        await managed.add_connection(store, CATALOG, box, f"app-{i:02d}", table, interface="cli")


async def test_rekey_never_undoes_a_disable_or_renew_made_meanwhile(
    store: Store, backend: Backend
) -> None:
    """A rekey that read every connection, then a disable and a renew through another
    instance before it writes: both survive, and the rekey still re-seals each secret."""
    old, new = new_key(), new_key()
    await _seed(store, SecretBox([parse_key(old)]), 2)
    rotated = SecretBox([parse_key(new), parse_key(old)])
    other = backend.make()
    await other.open()

    class ReadThenRace:
        """The store as rekey sees it: right after its read, another writer acts."""

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def list_connections(self, **kw: object) -> list[ConnectionRecord]:
            page = await store.list_connections(**kw)  # type: ignore[arg-type]
            await managed.update_connection(
                other, CATALOG, "app-00", {"enabled": False}, interface="admin"
            )
            await managed.renew_connection(
                other, CATALOG, rotated, "app-01", "renewed", "renewed-secret-0123456789",
                interface="admin",
            )  # fmt: skip
            return page

    try:
        _, seen, problems = await managed.reseal(
            ReadThenRace(),  # type: ignore[arg-type]
            rotated,
            (),
            legacy_only=False,
        )
    finally:
        await other.close()
    assert (seen, problems) == (2, [])
    disabled = await store.get_connection("app-00")
    renewed = await store.get_connection("app-01")
    assert disabled is not None and not disabled.enabled
    assert renewed is not None and renewed.key == "renewed"
    only_new = SecretBox([parse_key(new)])
    d = await store.get_district("springfield")
    assert d is not None
    assert only_new.open(Binding.of("app-00", "k0", d), disabled.secret) == "secret-0-0123456789"
    assert only_new.open(Binding.of("app-01", "renewed", d), renewed.secret) == (
        "renewed-secret-0123456789"
    )


async def test_concurrent_writers_on_one_record_all_land(store: Store, backend: Backend) -> None:
    """Rekey, scope updates and enable/disable from four instances at once, for real: every
    update is applied (retried on top of the others), none is overwritten."""
    old, new = new_key(), new_key()
    await _seed(store, SecretBox([parse_key(old)]), 1)
    rotated = SecretBox([parse_key(new), parse_key(old)])
    others = [backend.make() for _ in range(3)]
    for other in others:
        await other.open()
    scopes = ["roster.readonly", "roster-core.readonly", "gradebook.readonly"]
    try:

        async def widen(i: int) -> None:
            s = others[i % 3]
            current = await s.get_connection("app-00")
            assert current is not None
            await managed.update_connection(
                s, CATALOG, "app-00", {"expires": f"2030-01-{i + 1:02d}"}, interface="admin"
            )

        results = await asyncio.gather(
            managed.reseal(store, rotated, (), legacy_only=False),
            *(widen(i) for i in range(6)),
            managed.update_connection(
                others[0], CATALOG, "app-00", {"scopes": scopes}, interface="admin"
            ),
            return_exceptions=True,
        )
    finally:
        for other in others:
            await other.close()
    assert not [r for r in results if isinstance(r, BaseException)], results
    final = await store.get_connection("app-00")
    assert final is not None
    assert sorted(final.scopes) == sorted(scopes)  # the scope change was not overwritten
    assert final.version == 1 + 6 + 1 + 1  # every write landed once, on top of the others
    assert rotated.is_current(final.secret)
    audit = [e.action for e in await store.list_audit()]
    assert audit.count("connection.update") == 7


# -- a change and its audit event ---------------------------------------------------------------


def break_audit(backend: Backend) -> None:
    """The audit write fails (as on a full disk): the trail cannot take an event."""
    if backend.name == "sqlite":
        with sqlite3.connect(backend.target) as db:
            db.execute("ALTER TABLE audit RENAME TO audit_kept")
            db.execute("CREATE VIEW audit AS SELECT * FROM audit_kept")
        return
    with redis.Redis.from_url(backend.target) as client:
        if client.exists("orp:audit"):
            client.rename("orp:audit", "orp:audit_kept")
        client.set("orp:audit", "not a list")


def mend_audit(backend: Backend) -> None:
    if backend.name == "sqlite":
        with sqlite3.connect(backend.target) as db:
            db.execute("DROP VIEW audit")
            db.execute("ALTER TABLE audit_kept RENAME TO audit")
        return
    with redis.Redis.from_url(backend.target) as client:
        client.delete("orp:audit")
        if client.exists("orp:audit_kept"):
            client.rename("orp:audit_kept", "orp:audit")


async def test_no_change_is_kept_without_its_audit_event(store: Store, backend: Backend) -> None:
    await store.add_district(district("keep"), audit=event("district.add", district="keep"))
    await store.add_connection(connection("app-1", district="keep"), district_in_store=True)
    await store.add_district(district("empty"))
    await store.add_token(record("aaaaaaaaaaaa"))
    before = await store.list_audit()
    break_audit(backend)
    d = await store.get_district("keep")
    c = await store.get_connection("app-1")
    assert d is not None and c is not None
    attempts = [
        store.add_district(district("new"), audit=event("district.add")),
        store.update_district(replace(d, base_url="https://x.example"), audit=event("d.u")),
        store.remove_district("empty", audit=event("district.remove")),
        store.add_connection(
            connection("app-2", district="keep"), district_in_store=True, audit=event("c.add")
        ),
        store.update_connection(replace(c, enabled=False), audit=event("connection.update")),
        store.remove_connection("app-1", audit=event("connection.remove")),
        store.add_token(record("bbbbbbbbbbbb"), audit=event("token.issue")),
        store.revoke_token("aaaaaaaaaaaa", T0, audit=event("token.revoke")),
    ]
    for attempt in attempts:
        with pytest.raises(StoreUnavailable):
            await attempt
    mend_audit(backend)
    assert await store.list_audit() == before
    assert await store.get_district("keep") == d and await store.get_district("new") is None
    assert await store.get_district("empty") is not None
    assert await store.get_connection("app-1") == c
    assert await store.get_connection("app-2") is None
    assert await store.get_token("bbbbbbbbbbbb") is None
    token = await store.get_token("aaaaaaaaaaaa")
    assert token is not None and token.revoked is None
    # Mended: each change lands with its event.
    await store.update_connection(replace(c, enabled=False), audit=event("connection.update"))
    await store.add_token(record("bbbbbbbbbbbb"), audit=event("token.issue"))
    actions = [e.action for e in await store.list_audit()][len(before) :]
    assert actions == ["connection.update", "token.issue"]


async def test_no_token_is_issued_or_rotated_in_without_its_audit_event(
    store: Store, backend: Backend
) -> None:
    from proxy import tokens

    first = await tokens.issue(store, "acme", ttl=None, interface="cli")
    break_audit(backend)
    for attempt in (
        tokens.issue(store, "acme", ttl=None, interface="cli"),
        tokens.rotate(store, "acme", grace=SECOND, interface="cli"),
    ):
        with pytest.raises(StoreUnavailable):
            await attempt
    mend_audit(backend)
    assert [t.id for t in await store.list_tokens("acme")] == [first.record.id]
    rotated, ending = await tokens.rotate(store, "acme", grace=SECOND, interface="cli")
    events = [(e.action, e.token_id) for e in await store.list_audit()]
    assert events == [("token.issue", first.record.id), ("token.rotate", rotated.record.id)]
    assert ending == [first.record.id]


async def test_revoke_all_and_its_audit_event_are_one_write(store: Store, backend: Backend) -> None:
    """The event names the tokens revoked; if it cannot be written, none is revoked."""
    from proxy import tokens

    issued = [await tokens.issue(store, "acme", ttl=None, interface="cli") for _ in range(2)]
    break_audit(backend)
    with pytest.raises(StoreUnavailable):
        await tokens.revoke_all(store, "acme", interface="admin")
    mend_audit(backend)
    assert all(t.revoked is None for t in await store.list_tokens("acme"))
    ids = await tokens.revoke_all(store, "acme", interface="admin")
    assert ids == [t.record.id for t in issued]
    last = (await store.list_audit())[-1]
    assert last.action == "token.revoke_all" and last.detail["token_ids"] == ids
    assert await tokens.revoke_all(store, "acme", interface="admin") == []
    assert (await store.list_audit())[-1].detail["token_ids"] == []
