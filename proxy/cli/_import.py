"""``connections import TOML``: another config file's districts and connections into the store.

docs/commands.md: an operator migrates in one command. The file is
validated whole (its secrets resolved now, from the environment and ``${file:...}``), then
every item is planned before anything is written: a district or connection already in the
store with the same values is left as it is (so an import can be run again), one with other
values, a name the config file defines, or a vendor the config file lacks is a problem, and any
problem means nothing is written. ``--dry-run`` prints the plan and stops.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from proxy import config as config_mod
from proxy.cli._managed import run
from proxy.connections import managed
from proxy.connections.partial import StoreOnly
from proxy.errors import ConfigError
from proxy.store.base import Store
from proxy.store.crypto import SecretBox, SecretKeyError


async def _plan(
    store: Store, target: StoreOnly, source: config_mod.Config, box: SecretBox, path: str
) -> tuple[list[tuple[str, str, dict[str, Any]]], list[str], list[str]]:
    """(writes, unchanged, problems); a write is (kind, name, table)."""
    catalog = target.catalog
    writes: list[tuple[str, str, dict[str, Any]]] = []
    unchanged: list[str] = []
    problems: list[str] = []
    for name, district in sorted(source.districts.items()):
        where = f"{path}: districts.{name}"
        if name in catalog.districts:
            problems.append(f"{where}: also defined in {target.source}")
            continue
        if not district.tls_verify or not district.rewrite_hrefs:
            # A store district always verifies TLS and rewrites hrefs (the defaults).
            problems.append(
                f"{where}: tls_verify = false and rewrite_hrefs = false are not kept in the "
                "store; keep this district in the config file"
            )
            continue
        table = managed.district_table(district)
        stored = await store.get_district(name)
        if stored is None:
            try:
                managed.check_district(name, table)
            except ConfigError as err:
                problems += [f"{path}: {p}" for p in err.problems]
                continue
            writes.append(("district", name, table))
        elif managed.district_table(stored) == managed.district_table(
            managed.district_record(name, managed.check_district(name, table), table)
        ):
            unchanged.append(f"district {name}")
        else:
            problems.append(f"{where}: in the store already, with other values")
    for app_id, conn in sorted(source.connections.items()):
        where = f"{path}: connections.{app_id}"
        if app_id in catalog.connections:
            problems.append(f"{where}: also defined in {target.source}")
            continue
        if conn.vendor not in catalog.vendors:
            problems.append(f'{where}.vendor: vendor "{conn.vendor}" is not in {target.source}')
            continue
        table = managed.connection_table(conn, conn.secret)
        existing = await store.get_connection(app_id)
        if existing is None:
            try:  # what the write will check, checked before anything is written
                managed.validated_connection(app_id, table, catalog.vendors, True)
            except ConfigError as err:
                problems += [f"{path}: {p}" for p in err.problems]
                continue
            writes.append(("connection", app_id, table))
            continue
        try:
            in_config = existing.district in catalog.districts
            stored = None if in_config else await store.get_district(existing.district)
            bound = managed.binding(app_id, existing.key, existing.district, in_config, stored)
            same_secret = bound is not None and box.open(bound, existing.secret) == conn.secret
        except SecretKeyError:
            same_secret = False
        same = (
            existing.vendor,
            existing.district,
            existing.key,
            tuple(existing.scopes),
            existing.enabled,
            existing.expires,
        ) == (conn.vendor, conn.district, conn.key, tuple(sorted(conn.scopes)), conn.enabled,
              conn.expires)  # fmt: skip
        if same and same_secret:
            unchanged.append(f"connection {app_id}")
        else:
            problems.append(f"{where}: in the store already, with other values")
    return writes, unchanged, problems


def read_source(target: StoreOnly, path: str) -> config_mod.Config:
    """The imported file validated as a config whose vendors are ``--config``'s: it holds
    districts and connections only (docs/commands.md). Its own ``[vendors]``, if any, are not
    read; a connection naming a vendor that ``--config`` lacks is left to the plan, which
    names ``--config``'s file."""
    raw = config_mod.read_toml(path)
    named = {
        str(table.get("vendor"))
        for table in _tables(raw, "connections").values()
        if isinstance(table, dict) and isinstance(table.get("vendor"), str)
    }
    # Names only: the vendors' secrets stay unresolved (nothing here needs them).
    raw["vendors"] = {name: {} for name in sorted(set(target.vendors) | named)}
    return config_mod.validate(raw, os.environ, source=path)


def _tables(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    return value if isinstance(value, dict) else {}


def import_file(target: StoreOnly, path: str, *, dry_run: bool) -> int:
    source = read_source(target, path)
    box = target.secret_box()
    if source.connections and not box.can_seal:
        box.require()  # the one-line error naming store.secret_keys

    async def act(store: Store) -> int:
        writes, unchanged, problems = await _plan(store, target, source, box, path)
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            print(f"{path}: nothing imported ({len(problems)} problem(s))", file=sys.stderr)
            return 1
        verb = "would add" if dry_run else "added"
        catalog = target.catalog
        for kind, name, table in writes:
            if not dry_run:
                if kind == "district":
                    await managed.add_district(store, catalog, name, table, interface="cli")
                else:
                    await managed.add_connection(store, catalog, box, name, table, interface="cli")
            extra = f" ({table['vendor']} -> {table['district']})" if kind == "connection" else ""
            print(f"{verb} {kind} {name}{extra}")
        for item in unchanged:
            print(f"unchanged {item} (already in the store)")
        if dry_run:
            print(f"dry run: nothing written ({len(writes)} to add)")
        return 0

    return run(target, act)
