"""Districts and connections as managed data: validate, seal, write, audit.

SPEC.md "Connections in the store". The CLI (``districts ...``, ``connections ...``), the admin
API and the console all change the store through these functions, so every interface refuses
the same input with the same words: input is checked by ``config.validate`` itself, on a
one-table document, and a problem reads as ``config validate`` would say it
(``connections.app-7.scopes[1]: unknown scope "gradebook.write"``; the admin API drops the
``connections.app-7.`` prefix). Every problem is reported at once, nothing is written until
all pass, and each change is one store write plus one audit event (``district.add``,
``connection.renew``, ...) holding the appId and the interface, never a secret.

What the TOML file holds is the ``Catalog``: vendor names, and the names (and tables) of its
districts and connections. A store name may not repeat a TOML name (409), and only store
records change at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from . import config as config_mod
from .config import Config, ConnectionConfig, DistrictConfig
from .errors import ConfigError, Conflict, NotFound
from .store.base import AuditEvent, ConnectionRecord, DistrictRecord, Store
from .store.crypto import SecretBox
from .tokens import now_utc

#: The keys of ``[districts.X]`` a store district takes (SPEC.md "Connections in the store").
DISTRICT_FIELDS = (
    "base_url",
    "auth",
    "token_url",
    "signature_method",
    "vendor_authorization",
    "versions",
    "max_connections",
    "max_wait",
    "rate_limit",
)
CONNECTION_FIELDS = ("vendor", "district", "key", "secret", "scopes", "enabled", "expires")
# A district only to satisfy the connection's "district exists" rule while its own fields are
# checked; the real district was checked to exist beforehand.
_STAND_IN = {"base_url": "https://district.invalid"}
_VERSIONS = {"v1p1": "1.1", "v1p2": "1.2"}


@dataclass(frozen=True)
class Catalog:
    """What the TOML file says about names: its vendors, districts and connections."""

    vendors: frozenset[str] = frozenset()
    districts: Mapping[str, Any] = field(default_factory=dict)
    connections: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, config: config_mod.Config) -> Catalog:
        return cls(frozenset(config.vendors), config.districts, config.connections)


# -- validation -------------------------------------------------------------------------------


def _validate(
    path: str, doc: dict[str, Any], table: Mapping[str, Any]
) -> tuple[Config | None, list[str]]:
    """``config.validate`` of ``doc``: (the config or None, its problems), with ``${...}``
    refused in every value of ``table`` (the input) instead of being looked up."""
    problems: list[str] = []
    flagged = []
    # SECURITY: values from the CLI or the admin API are taken as written; a "${NAME}" would
    # otherwise pull the proxy's own environment (its admin token...) into the store.
    for name, value in table.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and "${" in v for v in values):
            problems.append(f"{path}.{name}: must not contain ${{...}}")
            flagged += [f"{path}.{name}:", f"{path}.{name}["]
    try:
        return config_mod.validate(doc, {}), problems
    except ConfigError as err:
        problems += [p for p in err.problems if not p.startswith(tuple(flagged))]
        return None, problems


def check_district(name: str, table: Mapping[str, Any]) -> DistrictConfig:
    """The district ``table`` describes (the keys of ``[districts.X]``), or ConfigError."""
    path = f"districts.{name}"
    known = {k: v for k, v in table.items() if k in DISTRICT_FIELDS}
    config, problems = _validate(path, {"districts": {name: known}}, known)
    problems += [f"{path}.{key}: unknown key" for key in sorted(set(table) - set(known))]
    if problems or config is None:
        raise ConfigError(problems)
    return config.districts[name]


def check_connection(
    app_id: str, table: Mapping[str, Any], vendors: Iterable[str], district_known: bool
) -> ConnectionConfig:
    """The connection ``table`` describes (the keys of ``[connections.X]``), or ConfigError.
    ``district_known``: its district is in the TOML file or the store."""
    path = f"connections.{app_id}"
    district = table.get("district")
    # A secret is whatever the district issued, "${" included: it is checked for presence
    # only, through a stand-in, and never interpolated.
    secret = table.get("secret")
    checked = dict(table)
    if isinstance(secret, str) and secret:
        checked["secret"] = "stand-in"
    elif secret == "":
        del checked["secret"]
    doc: dict[str, Any] = {
        "vendors": {v: {} for v in vendors},
        "connections": {app_id: checked},
    }
    if district_known and isinstance(district, str):
        doc["districts"] = {district: _STAND_IN}
    config, problems = _validate(path, doc, checked)
    if problems or config is None:
        raise ConfigError(
            [p.replace("in [districts]", "in [districts] or the store") for p in problems]
        )
    conn = config.connections[app_id]
    return replace(conn, secret=secret) if isinstance(secret, str) and secret else conn


def relative(problems: Iterable[str], prefix: str) -> list[str]:
    """Problems as the admin API words them: ``scopes[1]: ...`` for
    ``connections.app-7.scopes[1]: ...``; the name itself is ``name`` or ``app_id``."""
    out = []
    for problem in problems:
        if problem.startswith(prefix + "."):
            out.append(problem[len(prefix) + 1 :])
        elif problem.startswith(prefix + ":"):
            kind = "app_id" if prefix.startswith("connections.") else "name"
            out.append(kind + problem[len(prefix) :])
        else:
            out.append(problem)
    return out


# -- records and views ------------------------------------------------------------------------


def district_record(name: str, cfg: DistrictConfig, table: Mapping[str, Any]) -> DistrictRecord:
    now = now_utc()
    return DistrictRecord(
        name=name,
        base_url=cfg.base_url,
        auth=cfg.auth,
        signature_method=cfg.signature_method,
        token_url=cfg.token_url,
        vendor_authorization=cfg.vendor_authorization,
        versions=cfg.versions,
        max_connections=cfg.max_connections,
        # Kept as written ("10s", "600/m"): validated above, shown back as the operator wrote.
        max_wait=table.get("max_wait"),
        rate_limit=table.get("rate_limit"),
        created=now,
        updated=now,
    )


def district_table(record: DistrictRecord) -> dict[str, Any]:
    """The ``[districts.X]`` table of a store district (what ``check_district`` takes)."""
    table: dict[str, Any] = {
        "base_url": record.base_url,
        "auth": record.auth,
        "vendor_authorization": record.vendor_authorization,
        "versions": [_VERSIONS.get(v, v) for v in record.versions],
    }
    if record.auth == "oauth1":
        table["signature_method"] = record.signature_method
    for name in ("token_url", "max_connections", "max_wait", "rate_limit"):
        if getattr(record, name) is not None:
            table[name] = getattr(record, name)
    return table


def district_config(record: DistrictRecord) -> DistrictConfig:
    """The runtime district of a store record (validated when written)."""
    return check_district(record.name, district_table(record))


def district_view(record: DistrictRecord | DistrictConfig, source: str) -> dict[str, Any]:
    if isinstance(record, DistrictRecord):
        view: dict[str, Any] = {"name": record.name, **district_table(record)}
        view.update(created=_iso(record.created), updated=_iso(record.updated))
    else:
        view = {
            "name": record.name,
            "base_url": record.base_url,
            "auth": record.auth,
            "vendor_authorization": record.vendor_authorization,
            "versions": [_VERSIONS.get(v, v) for v in record.versions],
            "max_connections": record.max_connections,
            "token_url": record.token_url,
        }
    view.setdefault("token_url", None)
    view.setdefault("max_connections", None)
    view["source"] = source
    return view


def connection_view(record: ConnectionRecord) -> dict[str, Any]:
    """A store connection as listings show it: never its secret, sealed or not."""
    return {
        "appId": record.app_id,
        "vendor": record.vendor,
        "district": record.district,
        "key": record.key,
        "scopes": list(record.scopes),
        "enabled": record.enabled,
        "expires": record.expires.isoformat() if record.expires else None,
        "created": _iso(record.created),
        "updated": _iso(record.updated),
        "source": "store",
    }


def config_connection_view(app_id: str, table: Any) -> dict[str, Any]:
    """A TOML connection as listings show it (a ``ConnectionConfig``, or the raw table when
    the command did not resolve the file's secrets)."""
    if isinstance(table, ConnectionConfig):
        values = {
            "vendor": table.vendor,
            "district": table.district,
            "scopes": sorted(table.scopes),
            "enabled": table.enabled,
            "expires": table.expires.isoformat() if table.expires else None,
        }
    else:
        raw = table if isinstance(table, dict) else {}
        expires = raw.get("expires")
        values = {
            "vendor": raw.get("vendor"),
            "district": raw.get("district"),
            "scopes": list(raw.get("scopes") or []),
            "enabled": raw.get("enabled", True),
            "expires": expires.isoformat() if isinstance(expires, date) else expires,
        }
    return {"appId": app_id, **values, "created": None, "updated": None, "source": "config"}


def _iso(value: date) -> str:
    return value.isoformat().replace("+00:00", "Z")


# -- operations -------------------------------------------------------------------------------


async def _audit(store: Store, action: str, interface: str, **detail: Any) -> None:
    vendor = detail.pop("vendor", None)
    await store.add_audit(
        AuditEvent(at=now_utc(), action=action, interface=interface, vendor=vendor, detail=detail)
    )


async def add_district(
    store: Store, catalog: Catalog, name: str, table: Mapping[str, Any], *, interface: str
) -> DistrictRecord:
    cfg = check_district(name, table)
    if name in catalog.districts:
        raise Conflict(f'district "{name}" is defined in the config file')
    record = district_record(name, cfg, table)
    await store.add_district(record)
    await _audit(store, "district.add", interface, district=name)
    return record


async def update_district(
    store: Store, catalog: Catalog, name: str, changes: Mapping[str, Any], *, interface: str
) -> DistrictRecord:
    old = await store.get_district(name)
    if old is None:
        if name in catalog.districts:
            raise Conflict(f'district "{name}" is defined in the config file; change it there')
        raise NotFound(f'no district "{name}"')
    table = {**district_table(old), **changes}
    table = {k: v for k, v in table.items() if v is not None}
    if table.get("auth") == "oauth1":
        table.pop("token_url", None)
    cfg = check_district(name, table)
    record = replace(district_record(name, cfg, table), created=old.created)
    await store.update_district(record)
    await _audit(store, "district.update", interface, district=name, fields=sorted(changes))
    return record


async def remove_district(store: Store, catalog: Catalog, name: str, *, interface: str) -> None:
    if name in catalog.districts and await store.get_district(name) is None:
        raise Conflict(f'district "{name}" is defined in the config file; remove it there')
    await store.remove_district(name)
    await _audit(store, "district.remove", interface, district=name)


async def add_connection(
    store: Store,
    catalog: Catalog,
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
    cfg = check_connection(app_id, table, catalog.vendors, in_toml or in_store)
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
    )
    await store.add_connection(record, district_in_store=not in_toml)
    await _audit(store, action, interface, app_id=app_id, vendor=cfg.vendor, district=cfg.district)
    return record


async def _stored(store: Store, catalog: Catalog, app_id: str) -> ConnectionRecord:
    record = await store.get_connection(app_id)
    if record is None:
        if app_id in catalog.connections:
            raise Conflict(f"connection {app_id} is defined in the config file; change it there")
        raise NotFound(f"no connection {app_id}")
    return record


def _table(record: ConnectionRecord, secret: str) -> dict[str, Any]:
    table: dict[str, Any] = {
        "vendor": record.vendor,
        "district": record.district,
        "key": record.key,
        "secret": secret,
        "scopes": list(record.scopes),
        "enabled": record.enabled,
    }
    if record.expires is not None:
        table["expires"] = record.expires
    return table


async def update_connection(
    store: Store, catalog: Catalog, app_id: str, changes: Mapping[str, Any], *, interface: str
) -> ConnectionRecord:
    """``changes``: any of ``scopes``, ``enabled``, ``expires`` (None: no expiry)."""
    old = await _stored(store, catalog, app_id)
    problems = [
        f"connections.{app_id}.{k}: cannot be changed here"
        + ("; use renew" if k in ("key", "secret") else "")
        for k in sorted(set(changes) - {"scopes", "enabled", "expires"})
    ]
    if problems:
        raise ConfigError(problems)
    # The secret stays sealed: validation needs a value, not this one.
    table = {**_table(old, "unchanged"), **changes}
    table = {k: v for k, v in table.items() if v is not None}
    cfg = check_connection(app_id, table, catalog.vendors | {old.vendor}, True)
    record = replace(
        old,
        scopes=tuple(sorted(cfg.scopes)),
        enabled=cfg.enabled,
        expires=cfg.expires,
        updated=now_utc(),
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


async def renew_connection(
    store: Store,
    catalog: Catalog,
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
    table = {**_table(old, ""), "key": key, "secret": secret}
    if expires is not _KEEP:
        table["expires"] = expires
    table = {k: v for k, v in table.items() if v is not None}
    cfg = check_connection(app_id, table, catalog.vendors | {old.vendor}, True)
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


async def remove_connection(store: Store, catalog: Catalog, app_id: str, *, interface: str) -> None:
    old = await _stored(store, catalog, app_id)
    await store.remove_connection(app_id)
    await _audit(store, "connection.remove", interface, app_id=app_id, vendor=old.vendor)
