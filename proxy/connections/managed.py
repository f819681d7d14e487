"""Districts and connections as managed data: validate, seal, write, audit.

docs/commands.md. The CLI (``districts ...``, ``connections ...``), the admin
API and the console all change the store through these functions, so every interface refuses
the same input with the same words: input is checked by ``config.validate`` itself, on a
one-table document (``proxy.connections.records``, re-exported here), and a problem reads as
``config validate`` would say it
(``connections.app-7.scopes[1]: unknown scope "gradebook.write"``; the admin API drops the
``connections.app-7.`` prefix). Every problem is reported at once, nothing is written until
all pass, and each change is one store write plus one audit event (``district.add``,
``connection.renew``, ...) holding the appId and the interface, never a secret.

What the TOML file holds is the ``ConfigEntries``: vendor names, and the names (and tables) of its
districts and connections. A store name may not repeat a TOML name (409), and only store
records change at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

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
from proxy.errors import ConfigError, Conflict, NotFound
from proxy.store.base import AuditEvent, ConnectionRecord, DistrictRecord, Store
from proxy.store.crypto import SecretBox
from proxy.tokens import now_utc

# -- operations -------------------------------------------------------------------------------


async def _audit(store: Store, action: str, interface: str, **detail: Any) -> None:
    vendor = detail.pop("vendor", None)
    await store.add_audit(
        AuditEvent(at=now_utc(), action=action, interface=interface, vendor=vendor, detail=detail)
    )


async def add_district(
    store: Store, catalog: ConfigEntries, name: str, table: Mapping[str, Any], *, interface: str
) -> DistrictRecord:
    cfg = check_district(name, table)
    if name in catalog.districts:
        raise Conflict(f'district "{name}" is defined in the config file')
    record = district_record(name, cfg, table)
    await store.add_district(record)
    await _audit(store, "district.add", interface, district=name)
    return record


async def update_district(
    store: Store,
    catalog: ConfigEntries,
    name: str,
    changes: Mapping[str, Any] | Callable[[DistrictRecord], Mapping[str, Any]],
    *,
    interface: str,
    action: str = "district.update",
) -> DistrictRecord:
    """``changes``: the keys to change, or a function of the stored record giving them."""
    old = await store.get_district(name)
    if old is None:
        if name in catalog.districts:
            raise Conflict(f'district "{name}" is defined in the config file; change it there')
        raise NotFound(f'no district "{name}"')
    if callable(changes):
        changes = changes(old)
    table = {**district_table(old), **changes}
    table = {k: v for k, v in table.items() if v is not None}
    if table.get("auth") == "oauth1":
        table.pop("token_url", None)
    cfg = check_district(name, table)
    record = replace(district_record(name, cfg, table), created=old.created)
    await store.update_district(record)
    await _audit(store, action, interface, district=name, fields=sorted(changes))
    return record


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
    await store.remove_district(name)
    await _audit(store, "district.remove", interface, district=name)


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
    """``table``: the keys of ``[connections.X]``, ``secret`` in clear (sealed here)."""
    district = table.get("district")
    in_toml = isinstance(district, str) and district in catalog.districts
    in_store = (
        isinstance(district, str) and not in_toml and await store.get_district(district) is not None
    )
    cfg = validated_connection(app_id, table, catalog.vendors, in_toml or in_store)
    if app_id in catalog.connections:
        raise Conflict(f"connection {app_id} is defined in the config file")
    now = now_utc()
    record = ConnectionRecord(
        app_id=app_id,
        vendor=cfg.vendor,
        district=cfg.district,
        key=cfg.key,
        secret=box.seal(app_id, cfg.secret),
        scopes=tuple(sorted(cfg.scopes)),
        enabled=cfg.enabled,
        expires=cfg.expires,
        created=now,
        updated=now,
        changes=cfg.changes,
        changes_at=cfg.changes_at,
        max_deletions=cfg.max_deletions,
    )
    await store.add_connection(record, district_in_store=not in_toml)
    await _audit(store, action, interface, app_id=app_id, vendor=cfg.vendor, district=cfg.district)
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
    """``changes``: any of ``scopes``, ``enabled``, ``expires`` (None: no expiry)."""
    old = await _stored(store, catalog, app_id)
    problems = [
        f"connections.{app_id}.{k}: cannot be changed here"
        + ("; use renew" if k in ("key", "secret") else "")
        for k in sorted(set(changes) - set(UPDATABLE))
    ]
    if problems:
        raise ConfigError(problems)
    # The secret stays sealed: validation needs a value, not this one.
    table = {**connection_table(old, "unchanged"), **changes}
    table = {k: v for k, v in table.items() if v is not None}
    cfg = validated_connection(app_id, table, catalog.vendors | {old.vendor}, True)
    record = replace(
        old,
        scopes=tuple(sorted(cfg.scopes)),
        enabled=cfg.enabled,
        expires=cfg.expires,
        updated=now_utc(),
        changes=cfg.changes,
        changes_at=cfg.changes_at,
        max_deletions=cfg.max_deletions,
    )
    await store.update_connection(record)
    await _audit(
        store,
        "connection.update",
        interface,
        app_id=app_id,
        vendor=old.vendor,
        fields=sorted(changes),
    )
    return record


_KEEP = object()
#: What ``update_connection`` may change.
UPDATABLE = ("scopes", "enabled", "expires", "changes", "changes_at", "max_deletions")


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
    """New key and secret (and expiry when given; None: no expiry), in use at once."""
    old = await _stored(store, catalog, app_id)
    table = {**connection_table(old, ""), "key": key, "secret": secret}
    if expires is not _KEEP:
        table["expires"] = expires
    table = {k: v for k, v in table.items() if v is not None}
    cfg = validated_connection(app_id, table, catalog.vendors | {old.vendor}, True)
    record = replace(
        old,
        key=cfg.key,
        secret=box.seal(app_id, cfg.secret),
        expires=cfg.expires,
        updated=now_utc(),
    )
    await store.update_connection(record)
    await _audit(store, "connection.renew", interface, app_id=app_id, vendor=old.vendor)
    return record


async def remove_connection(
    store: Store, catalog: ConfigEntries, app_id: str, *, interface: str
) -> None:
    old = await _stored(store, catalog, app_id)
    await store.remove_connection(app_id)
    # An appId added again starts its change feed afresh (its first walk: every record new).
    await store.forget_changes(app_id)
    await _audit(store, "connection.remove", interface, app_id=app_id, vendor=old.vendor)


__all__ = [
    "CONNECTION_FIELDS",
    "DISTRICT_FIELDS",
    "ConfigEntries",
    "add_connection",
    "add_district",
    "check_district",
    "config_connection_view",
    "connection_table",
    "connection_view",
    "district_config",
    "district_record",
    "district_table",
    "district_view",
    "pause_district",
    "relative",
    "remove_connection",
    "remove_district",
    "renew_connection",
    "resume_district",
    "update_connection",
    "update_district",
    "validated_connection",
]
