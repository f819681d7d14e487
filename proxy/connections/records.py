"""Districts and connections as records: input checked by ``config.validate`` itself, and the
views that listings show (docs/commands.md).

Input (CLI flags, admin JSON, console and intake forms) is checked on a one-table document, so
a problem reads as ``config validate`` would say it (``connections.app-7.scopes[1]: unknown
scope "gradebook.write"``); the admin API drops the ``connections.app-7.`` prefix
(``relative``). Values are taken literally: ``${...}`` is refused, never looked up, and a
secret is checked for presence only. A view never holds a secret, sealed or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from proxy import config as config_mod
from proxy.config import Config, ConnectionConfig, DistrictConfig
from proxy.config.model import DEFAULT_DROP_FIELDS
from proxy.errors import ConfigError
from proxy.store.base import ConnectionRecord, DistrictRecord
from proxy.tokens import now_utc

#: The keys of ``[districts.X]`` a store district takes (docs/commands.md).
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
    "timezone",
    "windows",
    "pauses",
)
CONNECTION_FIELDS = (
    "vendor",
    "district",
    "key",
    "secret",
    "scopes",
    "enabled",
    "expires",
    "drop_fields",
)
# A district only to satisfy the connection's "district exists" rule while its own fields are
# checked; the real district was checked to exist beforehand.
_STAND_IN = {"base_url": "https://district.invalid"}
_VERSIONS = {"v1p1": "1.1", "v1p2": "1.2"}


@dataclass(frozen=True)
class ConfigEntries:
    """What the TOML file says about names: its vendors, districts and connections."""

    vendors: frozenset[str] = frozenset()
    districts: Mapping[str, Any] = field(default_factory=dict)
    connections: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, config: config_mod.Config) -> ConfigEntries:
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


def validated_connection(
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
        timezone=None if cfg.timezone == "UTC" else cfg.timezone,
        windows=_json([w.as_table() for w in cfg.windows]),
        pauses=_json([p.as_table() for p in cfg.pauses]),
        created=now,
        updated=now,
    )


def _json(entries: list[dict[str, Any]]) -> str | None:
    return json.dumps(entries, separators=(",", ":")) if entries else None


def courtesy_table(district: DistrictRecord | DistrictConfig) -> dict[str, Any]:
    """A district's ``timezone``, ``windows`` and ``pauses`` as a config table holds them
    (docs/configuration.md "SIS courtesy"): what a view shows and ``check_district`` takes."""
    if isinstance(district, DistrictConfig):
        return {
            "timezone": district.timezone,
            "windows": [w.as_table() for w in district.windows],
            "pauses": [p.as_table() for p in district.pauses],
        }
    return {
        "timezone": district.timezone or "UTC",
        "windows": json.loads(district.windows) if district.windows else [],
        "pauses": json.loads(district.pauses) if district.pauses else [],
    }


def district_table(district: DistrictRecord | DistrictConfig) -> dict[str, Any]:
    """The ``[districts.X]`` table of a district (what ``check_district`` takes): a store
    record's values as written, or a validated config's written back."""
    table: dict[str, Any] = {
        "base_url": district.base_url,
        "auth": district.auth,
        "vendor_authorization": district.vendor_authorization,
        "versions": [_VERSIONS.get(v, v) for v in district.versions],
    }
    if district.auth == "oauth1":
        table["signature_method"] = district.signature_method
    if isinstance(district, DistrictConfig):
        optional: dict[str, Any] = {
            "token_url": district.token_url,
            "max_connections": district.max_connections,
            "max_wait": f"{district.max_wait:g}s",
            "rate_limit": None if district.rate_limit is None else str(district.rate_limit),
        }
    else:
        names = ("token_url", "max_connections", "max_wait", "rate_limit")
        optional = {name: getattr(district, name) for name in names}
    table.update({k: v for k, v in optional.items() if v is not None})
    table.update({k: v for k, v in courtesy_table(district).items() if v and v != "UTC"})
    return table


def connection_table(conn: ConnectionRecord | ConnectionConfig, secret: str) -> dict[str, Any]:
    """The ``[connections.X]`` table of a connection, with ``secret`` (a record's is sealed)."""
    table: dict[str, Any] = {
        "vendor": conn.vendor,
        "district": conn.district,
        "key": conn.key,
        "secret": secret,
        "scopes": sorted(conn.scopes),
        "enabled": conn.enabled,
    }
    if conn.expires is not None:
        table["expires"] = conn.expires
    if conn.drop_fields is not None:
        table["drop_fields"] = list(conn.drop_fields)
    return table


def district_config(record: DistrictRecord) -> DistrictConfig:
    """The runtime district of a store record (validated when written)."""
    return check_district(record.name, district_table(record))


def district_view(record: DistrictRecord | DistrictConfig, source: str) -> dict[str, Any]:
    if isinstance(record, DistrictRecord):
        view: dict[str, Any] = {"name": record.name, **district_table(record)}
        view.update(courtesy_table(record))
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
    view.update(courtesy_table(record))
    view.setdefault("token_url", None)
    view.setdefault("max_connections", None)
    for name in ("base_url", "token_url"):
        # SECURITY: a URL stored by an earlier version with user:pass@ is never shown whole.
        if isinstance(view[name], str) and "@" in urlsplit(view[name]).netloc:
            parts = urlsplit(view[name])
            view[name] = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
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
        "drop_fields": list(
            DEFAULT_DROP_FIELDS if record.drop_fields is None else record.drop_fields
        ),
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
            "drop_fields": list(table.drop_fields),
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
            "drop_fields": list(raw.get("drop_fields", DEFAULT_DROP_FIELDS)),
        }
    return {"appId": app_id, **values, "created": None, "updated": None, "source": "config"}


def _iso(value: date) -> str:
    return value.isoformat().replace("+00:00", "Z")
