"""``validate``: a parsed TOML document in, a ``Config`` out, every problem reported at once.

docs/configuration.md. The one side-effect-free function that ``serve``, SIGHUP,
``POST /admin/reload``, ``config validate`` and ``check`` all use (oauth2-proxy's habit:
config structs apart from validation, one line per problem). One small validator per section,
each reading its table with a ``Reader`` over the section dataclass's fields; a problem names
its key path (``connections.app-7.scopes[1]: unknown scope "gradebook.write"``). Warnings
(expiring connections, plain-HTTP districts, certificate checks off) never fail validation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from proxy.config.model import (
    DEFAULT_DROP_FIELDS,
    DEFAULT_VERSIONS,
    EXPIRY_WARNING,
    AdminConfig,
    Config,
    ConnectionConfig,
    DistrictConfig,
    ServerConfig,
    StoreConfig,
    VendorConfig,
    parse_duration,
    parse_listen,
    parse_rate,
    parse_size,
)
from proxy.config.reader import Reader, closest, defaults, plain_http, section_keys, tables, url
from proxy.courtesy.schedule import Pause, Window, overlaps, parse_pause, parse_window, zone
from proxy.errors import ConfigError
from proxy.names import NAME_RULE, is_name
from proxy.scopes import SCOPES, drop_field_problem
from proxy.store import store_kind
from proxy.store.crypto import parse_key

#: The keys each kind of table accepts: its dataclass's fields.
SCHEMA: dict[str, frozenset[str]] = {
    "server": section_keys(ServerConfig),
    "admin": section_keys(AdminConfig),
    "store": section_keys(StoreConfig),
    "vendor": section_keys(VendorConfig, "name"),
    "district": section_keys(DistrictConfig, "name"),
    "connection": section_keys(ConnectionConfig, "app_id", "stored"),
}
_TOP = frozenset({"server", "admin", "store", "vendors", "districts", "connections"})
_WEB = ("http", "https")
_VERSIONS = {"1.1": "v1p1", "v1p1": "v1p1", "1.2": "v1p2", "v1p2": "v1p2"}
_GRADEBOOK = frozenset({"gradebook.readonly", "gradebook.createput", "gradebook.delete"})
_SERVER = defaults(ServerConfig)
_ADMIN = defaults(AdminConfig)
_STORE = defaults(StoreConfig)
_DISTRICT = defaults(DistrictConfig)


def validate(
    raw: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    now: datetime | None = None,
    source: str | None = None,
) -> Config:
    """Validate a parsed TOML document; raise ``ConfigError`` listing every problem."""
    env = os.environ if env is None else env
    now = now or datetime.now(UTC)
    problems: list[str] = []
    warnings: list[str] = []

    def section(path: str, table: Any, kind: str) -> Reader:
        reader = Reader(problems, env, path, table)
        reader.unknown(SCHEMA[kind])
        return reader

    for name in raw:
        if name not in _TOP:
            hint = closest(name, _TOP)
            problems.append(f"{name}: unknown key" + (f' (did you mean "{hint}"?)' if hint else ""))
    server = _server(section("server", raw.get("server", {}), "server"))
    admin = _admin(section("admin", raw.get("admin", {}), "admin"))
    store = _store(section("store", raw.get("store", {}), "store"))
    vendor_tables = tables(problems, raw, "vendors")
    district_tables = tables(problems, raw, "districts")
    connection_tables = tables(problems, raw, "connections")

    vendors: dict[str, VendorConfig] = {}
    for name, table in vendor_tables.items():
        _name(problems, f"vendors.{name}", "vendor name", name)
        vendors[name] = _vendor(name, section(f"vendors.{name}", table, "vendor"), server)
    districts: dict[str, DistrictConfig] = {}
    for name, table in district_tables.items():
        _name(problems, f"districts.{name}", "district name", name)
        reader = section(f"districts.{name}", table, "district")
        districts[name] = _district(name, reader, warnings)
    connections: dict[str, ConnectionConfig] = {}
    for app_id, table in connection_tables.items():
        _name(problems, f"connections.{app_id}", "appId", app_id)
        reader = section(f"connections.{app_id}", table, "connection")
        connections[app_id] = _connection(app_id, reader, vendors, districts)
        _connection_warnings(connections[app_id], vendors, districts, now, warnings)

    if problems:
        raise ConfigError(problems)
    return Config(
        server=server,
        admin=admin,
        store=store,
        vendors=vendors,
        districts=districts,
        connections=connections,
        warnings=tuple(warnings),
        source=source,
    )


def _name(problems: list[str], path: str, what: str, name: str) -> None:
    if not is_name(name):
        problems.append(f"{path}: {what} must be {NAME_RULE}")


def _server(r: Reader) -> ServerConfig:
    d = _SERVER
    jwt_keys = _jwt_keys(r)
    public_url = url(r.problems, "server.public_url", r.string("public_url"), schemes=_WEB)
    server = ServerConfig(
        listen=r.parsed("listen", d["listen"], parse_listen),
        public_url=public_url,
        upstream_timeout=r.parsed("upstream_timeout", d["upstream_timeout"], parse_duration),
        drain_timeout=r.parsed("drain_timeout", d["drain_timeout"], parse_duration),
        max_body=r.parsed("max_body", d["max_body"], parse_size),
        trust_forwarded=r.boolean("trust_forwarded", d["trust_forwarded"]),
        jwt_keys=jwt_keys,
        jwt_ttl=r.parsed("jwt_ttl", d["jwt_ttl"], parse_duration),
        max_line=r.integer("max_line", d["max_line"], minimum=256) or d["max_line"],
        max_headers=r.integer("max_headers", d["max_headers"], minimum=1024) or d["max_headers"],
        client_timeout=r.parsed("client_timeout", d["client_timeout"], parse_duration),
        check_interval=r.parsed("check_interval", d["check_interval"], parse_duration),
        intake_private_networks=r.boolean("intake_private_networks", d["intake_private_networks"]),
    )
    for name in ("upstream_timeout", "drain_timeout", "jwt_ttl", "client_timeout"):
        if getattr(server, name) <= 0:
            r.problems.append(f"server.{name}: must be greater than zero")
    return server


def _jwt_key(value: str) -> str:
    if len(value.encode()) < 32:
        raise ValueError("must be at least 32 bytes (HS256 key)")
    return value


def _jwt_keys(r: Reader) -> tuple[str, ...]:
    """``[server] jwt_keys``: HS256 keys of at least 32 bytes (RFC 7518 §3.2)."""
    return tuple(r.strings("jwt_keys", _jwt_key))


def _admin(r: Reader) -> AdminConfig:
    admin = AdminConfig(
        listen=r.parsed("listen", _ADMIN["listen"], parse_listen), token=r.string("token")
    )
    if admin.token is not None and len(admin.token) < 16:
        r.problems.append("admin.token: must be at least 16 characters")
    return admin


def _store(r: Reader) -> StoreConfig:
    store_url = r.string("url", _STORE["url"]) or _STORE["url"]
    try:
        store_kind(store_url)
    except ValueError as exc:
        r.problems.append(str(exc))
    return StoreConfig(
        url=store_url,
        cache_ttl=r.parsed("cache_ttl", _STORE["cache_ttl"], parse_duration),
        secret_keys=_secret_keys(r),
        ledger_days=r.integer("ledger_days", _STORE["ledger_days"]) or _STORE["ledger_days"],
    )


def _secret_keys(r: Reader) -> tuple[bytes, ...]:
    """``[store] secret_keys``: base64url keys of 32 bytes (docs/configuration.md); each bad entry
    is a problem naming its index, never repeating the value."""
    return tuple(r.strings("secret_keys", parse_key))


#: A vendor ``client_secret``'s shortest length (docs/configuration.md): long enough that
#: guessing it, online or from a copy of the store, is hopeless.
MIN_CLIENT_SECRET = 32


def _vendor(name: str, r: Reader, server: ServerConfig) -> VendorConfig:
    va = r.string("vendor_authorization")
    if va is not None and (":" not in va or not va.partition(":")[0] or not va.partition(":")[2]):
        r.problems.append(f"{r.path}.vendor_authorization: must be key:secret")
    client_secret = r.string("client_secret")
    if client_secret is not None and len(client_secret) < MIN_CLIENT_SECRET:
        r.problems.append(
            f"{r.path}.client_secret: must be at least {MIN_CLIENT_SECRET} characters"
        )
    vendor = VendorConfig(
        name=name,
        client_secret=client_secret,
        vendor_authorization=va,
        rate_limit=r.parsed("rate_limit", None, parse_rate),
    )
    if client_secret is not None and not server.jwt_keys:
        r.problems.append(f"{r.path}.client_secret: needs server.jwt_keys to sign JWTs")
    return vendor


def _district(name: str, r: Reader, warnings: list[str]) -> DistrictConfig:
    path, problems, d = r.path, r.problems, _DISTRICT
    base_url = url(problems, f"{path}.base_url", r.string("base_url", required=True), schemes=_WEB)
    if base_url and "/ims/oneroster" in base_url:
        problems.append(f"{path}.base_url: give everything before /ims/oneroster, not the API path")
    auth = r.string("auth", d["auth"])
    if auth not in ("oauth1", "oauth2"):
        problems.append(f'{path}.auth: must be "oauth1" or "oauth2", not "{auth}"')
    method = r.string("signature_method", d["signature_method"])
    if method not in ("HMAC-SHA256", "HMAC-SHA1"):
        problems.append(
            f'{path}.signature_method: must be "HMAC-SHA256" or "HMAC-SHA1", not "{method}"'
        )
    token_url = url(problems, f"{path}.token_url", r.string("token_url"), schemes=_WEB)
    if auth == "oauth2" and token_url is None and "token_url" not in r.table:
        problems.append(f'{path}.token_url: required with auth = "oauth2"')
    if auth == "oauth1" and "token_url" in r.table:
        # A warning, not a problem: docs/'s own [districts.X] example sets token_url beside
        # auth = "oauth1" (the key documented, not used), and that example must load.
        warnings.append(f'{path}.token_url: ignored, only used with auth = "oauth2"')
    versions = _versions(r)
    if base_url and plain_http(base_url):
        warnings.append(
            f"{path}.base_url: plain HTTP; student data would cross the network unencrypted"
        )
    if token_url and plain_http(token_url):
        warnings.append(
            f"{path}.token_url: plain HTTP; the key and secret would cross the network unencrypted"
        )
    district = DistrictConfig(
        name=name,
        base_url=base_url or "",
        auth=auth or d["auth"],
        signature_method=method or d["signature_method"],
        token_url=token_url,
        vendor_authorization=r.boolean("vendor_authorization", d["vendor_authorization"]),
        max_connections=r.integer("max_connections", d["max_connections"]),
        max_wait=r.parsed("max_wait", d["max_wait"], parse_duration),
        rate_limit=r.parsed("rate_limit", d["rate_limit"], parse_rate),
        versions=versions,
        tls_verify=r.boolean("tls_verify", d["tls_verify"]),
        rewrite_hrefs=r.boolean("rewrite_hrefs", d["rewrite_hrefs"]),
        timezone=_timezone(r),
        windows=_windows(r),
        pauses=_pauses(r),
    )
    if not district.tls_verify:
        warnings.append(f"{path}.tls_verify: false; the district's certificate is not checked")
    return district


def _timezone(r: Reader) -> str:
    """``timezone``: an IANA zone name (docs/configuration.md "SIS courtesy")."""
    name = r.string("timezone", _DISTRICT["timezone"]) or _DISTRICT["timezone"]
    try:
        zone(name)
    except ValueError as exc:
        r.problems.append(f"{r.path}.timezone: {exc}")
        return str(_DISTRICT["timezone"])
    return name


def _entries(r: Reader, name: str, example: str) -> list[Any] | None:
    raw = r.raw(name)
    if raw is None:
        return None
    if not isinstance(raw, list):
        r.problems.append(f"{r.path}.{name}: must be a list of tables such as {example}")
        return None
    return raw


def _windows(r: Reader) -> tuple[Window, ...]:
    """``windows``: peak-hour caps; a problem per bad entry key, and per overlapping pair."""
    raw = _entries(
        r, "windows", '[{ days = "mon-fri", from = "07:00", to = "16:00", max_connections = 1 }]'
    )
    if raw is None:
        return ()
    parsed = [parse_window(t, r.problems, f"{r.path}.windows[{i}]") for i, t in enumerate(raw)]
    valid = [(i, w) for i, w in enumerate(parsed) if w is not None]
    # Overlaps among the entries that parsed, named by their own indexes.
    for a, b in overlaps([w for _, w in valid]):
        (i, first), (j, _) = valid[a], valid[b]
        r.problems.append(
            f"{r.path}.windows[{j}]: overlaps windows[{i}] ({first.describe()}); "
            "a moment may fall in one window only"
        )
    return tuple(w for _, w in valid) if len(valid) == len(parsed) else ()


def _pauses(r: Reader) -> tuple[Pause, ...]:
    """``pauses``: inclusive date ranges in the district's zone, each with its reason."""
    raw = _entries(r, "pauses", '[{ from = 2027-06-20, to = 2027-08-01, reason = "summer" }]')
    if raw is None:
        return ()
    parsed = [parse_pause(t, r.problems, f"{r.path}.pauses[{i}]") for i, t in enumerate(raw)]
    return tuple(p for p in parsed if p is not None)


def _versions(r: Reader) -> tuple[str, ...]:
    """``versions``: OneRoster versions as "1.1" / "1.2" (or v1p1 / v1p2), normalised."""
    raw = r.raw("versions")
    if raw is None:
        return DEFAULT_VERSIONS
    if not isinstance(raw, list) or not raw:
        r.problems.append(f'{r.path}.versions: must be a non-empty list such as ["1.1", "1.2"]')
        return DEFAULT_VERSIONS
    normalised = []
    for i, v in enumerate(raw):
        mapped = _VERSIONS.get(str(v))
        if mapped is None:
            r.problems.append(f'{r.path}.versions[{i}]: unknown OneRoster version "{v}"')
        else:
            normalised.append(mapped)
    return tuple(dict.fromkeys(normalised)) or DEFAULT_VERSIONS


def _connection(
    app_id: str,
    r: Reader,
    vendors: Mapping[str, VendorConfig],
    districts: Mapping[str, DistrictConfig],
) -> ConnectionConfig:
    path, problems = r.path, r.problems
    vendor = r.string("vendor", required=True)
    district = r.string("district", required=True)
    if vendor is not None and vendor not in vendors:
        problems.append(f'{path}.vendor: no vendor "{vendor}" in [vendors]')
    if district is not None and district not in districts:
        problems.append(f'{path}.district: no district "{district}" in [districts]')
    scopes = _scopes(r)
    expires = _expires(r)
    return ConnectionConfig(
        app_id=app_id,
        vendor=vendor or "",
        district=district or "",
        key=r.string("key", required=True) or "",
        secret=r.string("secret", required=True) or "",
        scopes=scopes,
        enabled=r.boolean("enabled", True),
        expires=expires,
        drop_fields=drop_fields(r, scopes),
    )


def _scopes(r: Reader) -> frozenset[str]:
    raw = r.raw("scopes")
    if raw is None:
        r.problems.append(f"{r.path}.scopes: required (the district's Data to Share)")
        return frozenset()
    if not isinstance(raw, list):
        r.problems.append(f"{r.path}.scopes: must be a list of scope names")
        return frozenset()
    scopes: set[str] = set()
    for i, s in enumerate(raw):
        if not isinstance(s, str) or s not in SCOPES:
            r.problems.append(f'{r.path}.scopes[{i}]: unknown scope "{s}"')
        else:
            scopes.add(s)
    return frozenset(scopes)


def drop_fields(r: Reader, scopes: frozenset[str]) -> tuple[str, ...]:
    """``drop_fields``: each entry ``<collection>.<field>`` or ``*.<field>``, for a collection
    the connection's scopes can give; one problem per bad entry, naming it."""
    raw = r.raw("drop_fields")
    if raw is None:
        return DEFAULT_DROP_FIELDS
    if not isinstance(raw, list):
        r.problems.append(f'{r.path}.drop_fields: must be a list such as ["users.password"]')
        return DEFAULT_DROP_FIELDS
    kept: list[str] = []
    for i, entry in enumerate(raw):
        problem = drop_field_problem(entry, scopes or None)
        if problem is not None:
            r.problems.append(f"{r.path}.drop_fields[{i}]: {problem}")
        elif entry not in kept:
            kept.append(entry)
    return tuple(kept)


def _expires(r: Reader) -> date | None:
    raw = r.raw("expires")
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    if not isinstance(raw, str):
        r.problems.append(f"{r.path}.expires: must be a TOML date such as 2027-06-30")
        return None
    # A quoted date (or one from ${ENV}) is what many people write; accept it.
    text = r.string("expires")
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        r.problems.append(f'{r.path}.expires: invalid date "{text}" (write e.g. 2027-06-30)')
        return None


def _connection_warnings(
    conn: ConnectionConfig,
    vendors: Mapping[str, VendorConfig],
    districts: Mapping[str, DistrictConfig],
    now: datetime,
    warnings: list[str],
) -> None:
    path = f"connections.{conn.app_id}"
    vendor = vendors.get(conn.vendor)
    district = districts.get(conn.district)
    if (
        conn.scopes & _GRADEBOOK
        and district is not None
        and district.vendor_authorization
        and vendor is not None
        and vendor.vendor_authorization is None
    ):
        warnings.append(
            f"{path}: district {conn.district} wants x-vendor-authorization on gradebook calls "
            f"but vendors.{conn.vendor}.vendor_authorization is not set"
        )
    left = conn.days_left(now)
    if conn.expires is not None and left is not None:
        if left < 0:
            warnings.append(f"{path}.expires: expired on {conn.expires.isoformat()}")
        elif left <= EXPIRY_WARNING.days:
            warnings.append(f"{path}.expires: expires in {left} days ({conn.expires.isoformat()})")
