"""Districts and connections as managed data: validate, seal, write, audit.

docs/commands.md. The CLI (``districts ...``, ``connections ...``), the admin
API and the console all change the store through these functions, so every interface refuses
the same input with the same words: input is checked by ``config.validate`` itself, on a
one-table document (``proxy.connections.records``, re-exported here), and a problem reads as
``config validate`` would say it
(``connections.app-7.scopes[1]: unknown scope "gradebook.write"``; the admin API drops the
``connections.app-7.`` prefix). Every problem is reported at once, nothing is written until
all pass, and each change is one store write that carries its audit event (``district.add``,
``connection.renew``, ...: the appId and the interface, never a secret), so both are kept or
neither. A write names the version of the record it read, and one that lost a race to another
writer is read and applied again (``ATTEMPTS``). A secret is sealed for where it is sent
(``proxy.store.crypto.Binding``), and a change of where a district sends re-seals every
connection of it in the same store step.

What the TOML file holds is the ``ConfigEntries``: vendor names, and the names (and tables) of its
districts and connections. A store name may not repeat a TOML name (409), and only store
records change at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from proxy.connections.records import (
    CONNECTION_FIELDS,
    DISTRICT_FIELDS,
    ConfigEntries,
    check_district,
    config_connection_view,
    connection_table,
    connection_view,
    courtesy_table,
    district_config,
    district_record,
    district_table,
    district_view,
    relative,
    validated_connection,
)
from proxy.courtesy import paused
from proxy.errors import ConfigError, Conflict, NotFound, Stale
from proxy.store.base import AuditEvent, ConnectionRecord, DistrictRecord, Store
from proxy.store.crypto import Binding, SecretBox, SecretKeyError
from proxy.tokens import now_utc

# -- operations -------------------------------------------------------------------------------

#: A write that loses a race (``Stale``: the record changed since it was read) is read and
#: applied again, up to this many times (after a short random pause, so racing writers spread
#: out); then the 409 reaches the operator.
ATTEMPTS = 10
PAGE = 500
T = TypeVar("T")


def _event(action: str, interface: str, **detail: Any) -> AuditEvent:
    vendor = detail.pop("vendor", None)
    return AuditEvent(
        at=now_utc(), action=action, interface=interface, vendor=vendor, detail=detail
    )


async def _retrying(write: Callable[[], Awaitable[T]]) -> T:
    """``write`` (which reads, then writes naming the version it read), again on ``Stale``:
    a concurrent change wins, and this one is applied on top of it."""
    for attempt in range(ATTEMPTS):
        try:
            return await write()
        except Stale:
            if attempt == ATTEMPTS - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
    raise AssertionError("unreachable")


def binding(
    app_id: str, key: str, district: str, in_config: bool, record: DistrictRecord | None
) -> Binding | None:
    """What a connection's secret is sealed for: a config-file district by name, a store
    district by where it sends; None when the district is in neither."""
    if in_config:
        return Binding.of_config(app_id, key, district)
    return None if record is None else Binding.of(app_id, key, record)


async def _binding(
    store: Store, catalog: ConfigEntries, app_id: str, key: str, district: str
) -> Binding:
    in_config = district in catalog.districts
    record = None if in_config else await store.get_district(district)
    where = binding(app_id, key, district, in_config, record)
    if where is None:
        raise Conflict(f'connection {app_id}: its district "{district}" is gone')
    return where


async def add_district(
    store: Store, catalog: ConfigEntries, name: str, table: Mapping[str, Any], *, interface: str
) -> DistrictRecord:
    cfg = check_district(name, table)
    if name in catalog.districts:
        raise Conflict(f'district "{name}" is defined in the config file')
    record = district_record(name, cfg, table)
    await store.add_district(record, audit=_event("district.add", interface, district=name))
    return record


async def district_users(store: Store, district: str) -> list[ConnectionRecord]:
    """Every store connection of ``district``, by appId."""
    users: list[ConnectionRecord] = []
    after = ""
    while True:
        page = await store.list_connections(after=after, limit=PAGE)
        users += [c for c in page if c.district == district]
        if len(page) < PAGE:
            return users
        after = page[-1].app_id


def _resealed(
    box: SecretBox, old: DistrictRecord, new: DistrictRecord, users: list[ConnectionRecord]
) -> dict[str, tuple[int, str]]:
    """Each connection's secret sealed for the district's new values. One that does not open
    (changed outside the proxy) keeps its sealed text: it stays unusable until renewed."""
    resealed = {}
    for conn in users:
        sealed = conn.secret
        with contextlib.suppress(SecretKeyError):
            if box.is_legacy(conn.secret):
                secret = box.open_legacy(conn.app_id, conn.secret)
            else:
                secret = box.open(Binding.of(conn.app_id, conn.key, old), conn.secret)
            sealed = box.seal(Binding.of(conn.app_id, conn.key, new), secret)
        resealed[conn.app_id] = (conn.version, sealed)
    return resealed


async def update_district(
    store: Store,
    catalog: ConfigEntries,
    name: str,
    changes: Mapping[str, Any] | Callable[[DistrictRecord], Mapping[str, Any]],
    *,
    interface: str,
    box: SecretBox | None = None,
    action: str = "district.update",
) -> DistrictRecord:
    """Apply ``changes`` (the keys to change, or a function of the stored record giving them);
    a change of where the district sends (``auth``, ``base_url``, ``token_url``) re-seals every
    connection of it in the same store step, so ``box`` (the ``[store] secret_keys``) is needed
    then (docs/commands.md)."""

    async def write() -> DistrictRecord:
        old = await store.get_district(name)
        if old is None:
            if name in catalog.districts:
                raise Conflict(f'district "{name}" is defined in the config file; change it there')
            raise NotFound(f'no district "{name}"')
        asked = changes(old) if callable(changes) else changes
        table = {**district_table(old), **asked}
        table = {k: v for k, v in table.items() if v is not None}
        if table.get("auth") == "oauth1":
            table.pop("token_url", None)
        cfg = check_district(name, table)
        record = replace(
            district_record(name, cfg, table), created=old.created, version=old.version
        )
        reseal = None
        if Binding.of("", "", old) != Binding.of("", "", record):
            users = await district_users(store, name)
            if users:
                (box or SecretBox([])).require()  # the one-line error naming the key
            reseal = _resealed(box, old, record, users) if box is not None else {}
        event = _event(action, interface, district=name, fields=sorted(asked))
        await store.update_district(record, reseal=reseal, audit=event)
        return replace(record, version=old.version + 1)

    return await _retrying(write)


async def pause_district(
    store: Store, catalog: ConfigEntries, name: str, pause: Mapping[str, Any], *, interface: str
) -> DistrictRecord:
    """Add ``pause`` (``from``, ``to``, ``reason``) to a store district's ``pauses``
    (docs/configuration.md "SIS courtesy"); checked like every other change."""

    def add(old: DistrictRecord) -> dict[str, Any]:
        return {"pauses": [*courtesy_table(old)["pauses"], dict(pause)]}

    return await update_district(
        store, catalog, name, add, interface=interface, action="district.pause"
    )


async def resume_district(
    store: Store, catalog: ConfigEntries, name: str, now: datetime, *, interface: str
) -> DistrictRecord:
    """Remove the pause in effect at ``now`` from a store district (409 when none is);
    coming pauses stay."""

    def drop(old: DistrictRecord) -> dict[str, Any]:
        current = paused(district_config(old), now)
        if current is None:
            raise Conflict(f'district "{name}" is not paused')
        return {"pauses": [p for p in courtesy_table(old)["pauses"] if p != current.as_table()]}

    return await update_district(
        store, catalog, name, drop, interface=interface, action="district.resume"
    )


async def remove_district(
    store: Store, catalog: ConfigEntries, name: str, *, interface: str
) -> None:
    if name in catalog.districts and await store.get_district(name) is None:
        raise Conflict(f'district "{name}" is defined in the config file; remove it there')
    await store.remove_district(name, audit=_event("district.remove", interface, district=name))


async def add_connection(
    store: Store,
    catalog: ConfigEntries,
    box: SecretBox,
    app_id: str,
    table: Mapping[str, Any],
    *,
    interface: str,
    action: str = "connection.add",
) -> ConnectionRecord:
    """``table``: the keys of ``[connections.X]``, ``secret`` in clear (sealed here, for the
    district it names)."""
    district = table.get("district")
    in_toml = isinstance(district, str) and district in catalog.districts
    stored = (
        await store.get_district(district) if isinstance(district, str) and not in_toml else None
    )
    cfg = validated_connection(app_id, table, catalog.vendors, in_toml or stored is not None)
    if app_id in catalog.connections:
        raise Conflict(f"connection {app_id} is defined in the config file")
    where = binding(app_id, cfg.key, cfg.district, in_toml, stored)
    assert where is not None  # validated_connection refused an unknown district
    now = now_utc()
    record = ConnectionRecord(
        app_id=app_id,
        vendor=cfg.vendor,
        district=cfg.district,
        key=cfg.key,
        secret=box.seal(where, cfg.secret),
        scopes=tuple(sorted(cfg.scopes)),
        enabled=cfg.enabled,
        expires=cfg.expires,
        created=now,
        updated=now,
        version=1,
        drop_fields=cfg.drop_fields if "drop_fields" in table else None,
        changes=cfg.changes,
        changes_at=cfg.changes_at,
        max_deletions=cfg.max_deletions,
    )
    event = _event(action, interface, app_id=app_id, vendor=cfg.vendor, district=cfg.district)
    await store.add_connection(record, district_in_store=not in_toml, audit=event)
    return record


async def _stored(store: Store, catalog: ConfigEntries, app_id: str) -> ConnectionRecord:
    record = await store.get_connection(app_id)
    if record is None:
        if app_id in catalog.connections:
            raise Conflict(f"connection {app_id} is defined in the config file; change it there")
        raise NotFound(f"no connection {app_id}")
    return record


async def update_connection(
    store: Store, catalog: ConfigEntries, app_id: str, changes: Mapping[str, Any], *, interface: str
) -> ConnectionRecord:
    """``changes``: any of ``scopes``, ``enabled``, ``expires`` (None: no expiry),
    ``drop_fields`` (None: the default policy)."""
    problems = [
        f"connections.{app_id}.{k}: cannot be changed here"
        + ("; use renew" if k in ("key", "secret") else "")
        for k in sorted(set(changes) - set(UPDATABLE))
    ]
    if problems:
        raise ConfigError(problems)

    async def write() -> ConnectionRecord:
        old = await _stored(store, catalog, app_id)
        # The secret stays sealed: validation needs a value, not this one.
        table = {**connection_table(old, "unchanged"), **changes}
        table = {k: v for k, v in table.items() if v is not None}
        cfg = validated_connection(app_id, table, catalog.vendors | {old.vendor}, True)
        record = replace(
            old,
            scopes=tuple(sorted(cfg.scopes)),
            enabled=cfg.enabled,
            expires=cfg.expires,
            drop_fields=cfg.drop_fields if "drop_fields" in table else None,
            changes=cfg.changes,
            changes_at=cfg.changes_at,
            max_deletions=cfg.max_deletions,
            updated=now_utc(),
        )
        event = _event(
            "connection.update", interface, app_id=app_id, vendor=old.vendor, fields=sorted(changes)
        )
        await store.update_connection(record, audit=event)
        return replace(record, version=old.version + 1)

    return await _retrying(write)


_KEEP = object()
#: What ``update_connection`` may change: every connection field but who and what it is for
#: and its credentials (those change through ``renew_connection``).
UPDATABLE = tuple(f for f in CONNECTION_FIELDS if f not in ("vendor", "district", "key", "secret"))


async def renew_connection(
    store: Store,
    catalog: ConfigEntries,
    box: SecretBox,
    app_id: str,
    key: Any,
    secret: Any,
    *,
    expires: Any = _KEEP,
    interface: str,
) -> ConnectionRecord:
    """New key and secret (and expiry when given; None: no expiry), in use at once; the
    secret sealed for the connection's district as it is now."""

    async def write() -> ConnectionRecord:
        old = await _stored(store, catalog, app_id)
        table = {**connection_table(old, ""), "key": key, "secret": secret}
        if expires is not _KEEP:
            table["expires"] = expires
        table = {k: v for k, v in table.items() if v is not None}
        cfg = validated_connection(app_id, table, catalog.vendors | {old.vendor}, True)
        where = await _binding(store, catalog, app_id, cfg.key, old.district)
        record = replace(
            old,
            key=cfg.key,
            secret=box.seal(where, cfg.secret),
            expires=cfg.expires,
            updated=now_utc(),
        )
        event = _event("connection.renew", interface, app_id=app_id, vendor=old.vendor)
        await store.update_connection(record, audit=event)
        return replace(record, version=old.version + 1)

    return await _retrying(write)


async def remove_connection(
    store: Store, catalog: ConfigEntries, app_id: str, *, interface: str
) -> None:
    old = await _stored(store, catalog, app_id)
    event = _event("connection.remove", interface, app_id=app_id, vendor=old.vendor)
    await store.remove_connection(app_id, audit=event)
    # An appId added again starts its change feed afresh (its first walk: every record new).
    await store.forget_changes(app_id)


async def reseal(
    store: Store,
    box: SecretBox,
    config_districts: Container[str],
    *,
    legacy_only: bool,
) -> tuple[int, int, list[str]]:
    """Seal stored secrets again with the first of ``[store] secret_keys``, each for its
    district: every one not sealed that way yet (``store rekey``), or only those an earlier
    version sealed (``legacy_only``: what ``serve`` does when it starts, so a store written
    by an earlier version keeps working). Returns (re-sealed, seen, problems: one line per
    connection left as it was). Each swap names the version it read: a connection changed
    meanwhile is read again, never overwritten with what was read before."""
    done = seen = 0
    problems: list[str] = []
    districts: dict[str, DistrictRecord | None] = {}

    async def one(record: ConnectionRecord) -> bool:
        for _ in range(ATTEMPTS):
            todo = box.is_legacy(record.secret) or (
                not legacy_only and not box.is_current(record.secret)
            )
            if not todo:
                return False
            in_config = record.district in config_districts
            if not in_config and record.district not in districts:
                districts[record.district] = await store.get_district(record.district)
            where = binding(
                record.app_id,
                record.key,
                record.district,
                in_config,
                districts.get(record.district),
            )
            if where is None:
                raise SecretKeyError(
                    f'connection {record.app_id}: its district "{record.district}" is gone'
                )
            if box.is_legacy(record.secret):
                secret = box.open_legacy(record.app_id, record.secret)
            else:
                secret = box.open(where, record.secret)
            sealed = replace(record, secret=box.seal(where, secret), updated=now_utc())
            try:
                await store.update_connection(sealed)
                return True
            except Stale:
                await asyncio.sleep(random.uniform(0, 0.005))
                again = await store.get_connection(record.app_id)
                if again is None:
                    return False
                record = again
        raise Stale(f"connection {record.app_id} kept changing; run the command again")

    after = ""
    while True:
        page = await store.list_connections(after=after, limit=PAGE)
        for record in page:
            seen += 1
            try:
                done += await one(record)
            except (SecretKeyError, Stale) as exc:
                problems.append(exc.description)
        if len(page) < PAGE:
            return done, seen, problems
        after = page[-1].app_id


__all__ = [
    "CONNECTION_FIELDS",
    "DISTRICT_FIELDS",
    "ConfigEntries",
    "add_connection",
    "add_district",
    "binding",
    "check_district",
    "config_connection_view",
    "connection_table",
    "connection_view",
    "district_config",
    "district_record",
    "district_table",
    "district_users",
    "district_view",
    "pause_district",
    "relative",
    "remove_connection",
    "remove_district",
    "renew_connection",
    "reseal",
    "resume_district",
    "update_connection",
    "update_district",
    "validated_connection",
]
