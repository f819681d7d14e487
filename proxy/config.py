"""Configuration: TOML in, frozen dataclasses out (SPEC.md "Config (TOML)").

``validate(raw, env)`` is the one side-effect-free function that ``serve``, SIGHUP,
``POST /admin/reload``, ``config validate`` and ``check`` all use. It gathers every problem,
one line each, naming the key path (``connections.app-7.scopes[1]: unknown scope
"gradebook.write"``), and returns warnings (expiring connections, plain-HTTP districts) that
never fail validation. Everything the request hot path needs is precomputed here.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .names import NAME_RULE, is_name
from .scopes import SCOPES, scope_uri
from .store.crypto import parse_key
from .store.sentinel import SCHEME as SENTINEL_SCHEME
from .store.sentinel import parse_sentinel_url

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_RATE_UNITS = {"s": 1, "m": 60, "h": 3600}
# ``${NAME}`` from the environment, ``${file:/path}`` from a file (SPEC.md "Connections in the
# store": Kubernetes Secrets mounted as files); both read again on every load, so SIGHUP.
_ENV_RE = re.compile(r"\$\{(?:file:([^}]+)|([A-Za-z_][A-Za-z0-9_]*))\}")
_IC_KEY_RE = re.compile(
    r"^InfiniteCampus_(?P<vendor_key>.+)_(?P<guid>[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}"
    r"-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12})$"
)
EXPIRY_WARNING = timedelta(days=30)
DEFAULT_VERSIONS: tuple[str, ...] = ("v1p1", "v1p2")


def parse_duration(value: str) -> float:
    """``30s``, ``15m``, ``24h``, ``7d`` (and ``500ms``) to seconds."""
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'invalid duration "{value}" (write e.g. 30s, 15m, 24h, 7d)')
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: str | int) -> int:
    """``64MB``, ``512KB``, ``1GB`` (decimal; KiB/MiB/GiB binary) or a bare byte count."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"invalid size {value}")
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'invalid size "{value}" (write e.g. 64MB, 512KB)')
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])


@dataclass(frozen=True, slots=True)
class Rate:
    """A token-bucket rate: ``per_second`` refill, ``burst`` capacity (one period's worth)."""

    count: float
    period: float  # seconds

    @property
    def per_second(self) -> float:
        return self.count / self.period

    @property
    def burst(self) -> float:
        return max(1.0, self.count)


def parse_rate(value: str) -> Rate:
    """``1200/m``, ``20/s``, ``10000/h``."""
    match = _RATE_RE.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f'invalid rate "{value}" (write e.g. 20/s, 1200/m)')
    return Rate(float(match.group(1)), _RATE_UNITS[match.group(2)])


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> Listen:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'invalid listen address "{value}" (write host:port)')
    host = host.strip("[]") or "0.0.0.0"
    return Listen(host, int(port))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: Listen = Listen("0.0.0.0", 8080)
    public_url: str | None = None
    upstream_timeout: float = 30.0
    drain_timeout: float = 30.0
    max_body: int = 64 * 1000**2
    trust_forwarded: bool = False
    jwt_keys: tuple[str, ...] = ()
    jwt_ttl: float = 3600.0
    max_line: int = 8190
    max_headers: int = 16384
    client_timeout: float = 60.0
    # SPEC "Background checks": seconds between checklist rounds; 0 = off (the default).
    check_interval: float = 0.0


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: Listen = Listen("127.0.0.1", 9090)
    token: str | None = None


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "sqlite:///var/lib/oneroster-proxy/store.db"
    cache_ttl: float = 2.0
    # AES-256-GCM keys for secrets kept in the store; the first seals, every one opens.
    secret_keys: tuple[bytes, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class VendorConfig:
    name: str
    client_secret: str | None = None
    vendor_authorization: str | None = None
    rate_limit: Rate | None = None

    @property
    def vendor_key(self) -> str | None:
        """The Infinite Campus vendor key: the part of ``key:secret`` before the colon."""
        if self.vendor_authorization is None:
            return None
        return self.vendor_authorization.partition(":")[0]


@dataclass(frozen=True, slots=True)
class DistrictConfig:
    name: str
    base_url: str  # no trailing slash; everything before /ims/oneroster
    auth: str = "oauth1"
    signature_method: str = "HMAC-SHA256"
    token_url: str | None = None
    vendor_authorization: bool = False
    max_connections: int | None = None
    max_wait: float = 10.0
    rate_limit: Rate | None = None
    versions: tuple[str, ...] = DEFAULT_VERSIONS
    # SECURITY: on by default; off only for a test district with a self-signed certificate,
    # and `config validate` warns about it.
    tls_verify: bool = True
    # Rewrite JSON ``href`` values naming the district to the proxy (proxy/hrefs.py); off by
    # default, since it costs a scan of every JSON body.
    rewrite_hrefs: bool = False

    @property
    def upstream_prefix(self) -> str:
        return f"{self.base_url}/ims/oneroster/"


def expiry_end(expires: date) -> datetime:
    """The first instant a connection with ``expires`` no longer works. ``expires`` is inclusive
    (SPEC.md "Config (TOML)"): the connection works through that whole day, UTC, so it ends at
    the next midnight UTC. The one definition the gateway, ``check``, the expiry metric and the
    config warnings share."""
    return datetime.combine(expires + timedelta(days=1), time.min, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    app_id: str
    vendor: str
    district: str
    key: str
    secret: str = field(repr=False)
    scopes: frozenset[str]
    enabled: bool = True
    expires: date | None = None

    @property
    def ends_at(self) -> datetime | None:
        """When the connection stops working (None: never); see ``expiry_end``."""
        return None if self.expires is None else expiry_end(self.expires)

    def expired(self, now: datetime) -> bool:
        ends = self.ends_at
        return ends is not None and now.astimezone(UTC) >= ends

    def days_left(self, now: datetime) -> int | None:
        """Whole days from ``now``'s UTC date to ``expires`` (0 on the last day, negative after)."""
        if self.expires is None:
            return None
        return (self.expires - now.astimezone(UTC).date()).days

    def scope_uris(self, version: str) -> list[str]:
        return [scope_uri(s, version) for s in sorted(self.scopes)]


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    admin: AdminConfig
    store: StoreConfig
    vendors: Mapping[str, VendorConfig]
    districts: Mapping[str, DistrictConfig]
    connections: Mapping[str, ConnectionConfig]
    warnings: tuple[str, ...] = ()
    source: str | None = None


# -- validation -------------------------------------------------------------------------------

_SCHEMA: dict[str, set[str]] = {
    "server": {
        "listen",
        "public_url",
        "upstream_timeout",
        "drain_timeout",
        "max_body",
        "trust_forwarded",
        "jwt_keys",
        "jwt_ttl",
        "max_line",
        "max_headers",
        "client_timeout",
        "check_interval",
    },
    "admin": {"listen", "token"},
    "store": {"url", "cache_ttl", "secret_keys"},
    "vendor": {"client_secret", "vendor_authorization", "rate_limit"},
    "district": {
        "base_url",
        "auth",
        "signature_method",
        "token_url",
        "vendor_authorization",
        "max_connections",
        "max_wait",
        "rate_limit",
        "versions",
        "tls_verify",
        "rewrite_hrefs",
    },
    "connection": {"vendor", "district", "key", "secret", "scopes", "enabled", "expires"},
}
_TOP = {"server", "admin", "store", "vendors", "districts", "connections"}
# Defaults read from instances: with ``slots=True`` a dataclass's class attribute of a field is
# a slot descriptor, not the default value (``AdminConfig.listen`` is not a ``Listen``).
_ADMIN_DEFAULTS = AdminConfig()
_STORE_DEFAULTS = StoreConfig()


class _Reader:
    """Reads typed values out of one table, recording a problem per bad key."""

    def __init__(self, problems: list[str], env: Mapping[str, str], path: str, table: Any) -> None:
        self.problems = problems
        self.env = env
        self.path = path
        self.table: dict[str, Any] = table if isinstance(table, dict) else {}
        if not isinstance(table, dict):
            problems.append(f"{path}: must be a table")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def unknown(self, allowed: set[str]) -> None:
        for name in self.table:
            if name not in allowed:
                hint = _closest(name, allowed)
                suffix = f' (did you mean "{hint}"?)' if hint else ""
                self.problems.append(f"{self.key(name)}: unknown key{suffix}")

    def raw(self, name: str) -> Any:
        return self.table.get(name)

    def string(
        self, name: str, default: str | None = None, *, required: bool = False
    ) -> str | None:
        value = self.table.get(name)
        if value is None:
            if required:
                self.problems.append(f"{self.key(name)}: required")
            return default
        if not isinstance(value, str):
            self.problems.append(f"{self.key(name)}: must be a string")
            return default
        return self.interpolate(name, value)

    def interpolate(self, name: str, value: str) -> str | None:
        missing: list[str] = []

        def sub(match: re.Match[str]) -> str:
            path, var = match.group(1), match.group(2)
            if path is not None:
                try:
                    text = read_value_file(path)
                except ValueError as exc:
                    missing.append(str(exc))
                    return ""
                return text
            if var not in self.env:
                missing.append(f"environment variable {var} is not set")
                return ""
            return self.env[var]

        result = _ENV_RE.sub(sub, value)
        for problem in missing:
            self.problems.append(f"{self.key(name)}: {problem}")
        return None if missing else result

    def boolean(self, name: str, default: bool) -> bool:
        value = self.table.get(name, default)
        if not isinstance(value, bool):
            self.problems.append(f"{self.key(name)}: must be true or false")
            return default
        return value

    def integer(self, name: str, default: int | None, *, minimum: int = 1) -> int | None:
        value = self.table.get(name, default)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.problems.append(f"{self.key(name)}: must be an integer >= {minimum}")
            return default
        return value

    def parsed(self, name: str, default: Any, parser: Callable[[Any], Any]) -> Any:
        if name not in self.table:
            return default
        value = self.string(name) if isinstance(self.table[name], str) else self.table[name]
        if value is None:
            return default
        try:
            return parser(value)
        except (ValueError, TypeError) as exc:
            self.problems.append(f"{self.key(name)}: {exc}")
            return default


def _closest(name: str, allowed: set[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.75)
    return matches[0] if matches else None


def _url(
    problems: list[str], key: str, value: str | None, *, schemes: tuple[str, ...]
) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        problems.append(
            f'{key}: invalid URL "{value}" (expected {" or ".join(schemes)}://host/...)'
        )
        return None
    if parts.query or parts.fragment:
        problems.append(f"{key}: must not contain a query or fragment")
        return None
    return value.rstrip("/")


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

    for name in raw:
        if name not in _TOP:
            hint = _closest(name, _TOP)
            problems.append(f"{name}: unknown key" + (f' (did you mean "{hint}"?)' if hint else ""))

    srv = _Reader(problems, env, "server", raw.get("server", {}))
    srv.unknown(_SCHEMA["server"])
    base = ServerConfig()
    jwt_keys: list[str] = []
    jwt_raw = srv.raw("jwt_keys")
    if jwt_raw is not None:
        if not isinstance(jwt_raw, list):
            problems.append("server.jwt_keys: must be a list of strings")
        else:
            for i, item in enumerate(jwt_raw):
                key = f"jwt_keys[{i}]"
                if not isinstance(item, str):
                    problems.append(f"server.{key}: must be a string")
                    continue
                value = srv.interpolate(key, item)
                if value is not None and len(value.encode()) < 32:
                    problems.append(f"server.{key}: must be at least 32 bytes (HS256 key)")
                elif value is not None:
                    jwt_keys.append(value)
    public_url = _url(
        problems, "server.public_url", srv.string("public_url"), schemes=("http", "https")
    )
    server = ServerConfig(
        listen=srv.parsed("listen", base.listen, parse_listen),
        public_url=public_url,
        upstream_timeout=srv.parsed("upstream_timeout", base.upstream_timeout, parse_duration),
        drain_timeout=srv.parsed("drain_timeout", base.drain_timeout, parse_duration),
        max_body=srv.parsed("max_body", base.max_body, parse_size),
        trust_forwarded=srv.boolean("trust_forwarded", base.trust_forwarded),
        jwt_keys=tuple(jwt_keys),
        jwt_ttl=srv.parsed("jwt_ttl", base.jwt_ttl, parse_duration),
        max_line=srv.integer("max_line", base.max_line, minimum=256) or base.max_line,
        max_headers=srv.integer("max_headers", base.max_headers, minimum=1024) or base.max_headers,
        client_timeout=srv.parsed("client_timeout", base.client_timeout, parse_duration),
        check_interval=srv.parsed("check_interval", base.check_interval, parse_duration),
    )
    for name in ("upstream_timeout", "drain_timeout", "jwt_ttl", "client_timeout"):
        if getattr(server, name) <= 0:
            problems.append(f"server.{name}: must be greater than zero")

    adm = _Reader(problems, env, "admin", raw.get("admin", {}))
    adm.unknown(_SCHEMA["admin"])
    admin = AdminConfig(
        listen=adm.parsed("listen", _ADMIN_DEFAULTS.listen, parse_listen),
        token=adm.string("token"),
    )
    if admin.token is not None and len(admin.token) < 16:
        problems.append("admin.token: must be at least 16 characters")

    sto = _Reader(problems, env, "store", raw.get("store", {}))
    sto.unknown(_SCHEMA["store"])
    store_url = sto.string("url", _STORE_DEFAULTS.url) or _STORE_DEFAULTS.url
    store_scheme = store_url.partition("://")[0].lower() if "://" in store_url else ""
    if store_scheme == SENTINEL_SCHEME:
        try:
            parse_sentinel_url(store_url)
        except ValueError as exc:
            problems.append(str(exc))
    elif store_scheme not in ("sqlite", "redis", "rediss", "unix"):
        problems.append(
            f'store.url: unsupported store "{store_scheme}" (use sqlite:///path, '
            "redis://host:6379/0 or redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB])"
        )
    store = StoreConfig(
        url=store_url,
        cache_ttl=sto.parsed("cache_ttl", _STORE_DEFAULTS.cache_ttl, parse_duration),
        secret_keys=_secret_keys(sto),
    )

    vendors = _tables(problems, raw, "vendors")
    districts_raw = _tables(problems, raw, "districts")
    connections_raw = _tables(problems, raw, "connections")

    vendor_cfgs: dict[str, VendorConfig] = {}
    for name, table in vendors.items():
        if not is_name(name):
            problems.append(f"vendors.{name}: vendor name must be {NAME_RULE}")
        r = _Reader(problems, env, f"vendors.{name}", table)
        r.unknown(_SCHEMA["vendor"])
        va = r.string("vendor_authorization")
        if va is not None and (
            ":" not in va or not va.partition(":")[0] or not va.partition(":")[2]
        ):
            problems.append(f"vendors.{name}.vendor_authorization: must be key:secret")
        client_secret = r.string("client_secret")
        if client_secret is not None and len(client_secret) < 16:
            problems.append(f"vendors.{name}.client_secret: must be at least 16 characters")
        vendor_cfgs[name] = VendorConfig(
            name=name,
            client_secret=client_secret,
            vendor_authorization=va,
            rate_limit=r.parsed("rate_limit", None, parse_rate),
        )
        if client_secret is not None and not server.jwt_keys:
            problems.append(f"vendors.{name}.client_secret: needs server.jwt_keys to sign JWTs")

    district_cfgs: dict[str, DistrictConfig] = {}
    for name, table in districts_raw.items():
        path = f"districts.{name}"
        if not is_name(name):
            problems.append(f"{path}: district name must be {NAME_RULE}")
        r = _Reader(problems, env, path, table)
        r.unknown(_SCHEMA["district"])
        base_url = _url(
            problems,
            f"{path}.base_url",
            r.string("base_url", required=True),
            schemes=("http", "https"),
        )
        if base_url and "/ims/oneroster" in base_url:
            problems.append(
                f"{path}.base_url: give everything before /ims/oneroster, not the API path"
            )
        auth = r.string("auth", "oauth1")
        if auth not in ("oauth1", "oauth2"):
            problems.append(f'{path}.auth: must be "oauth1" or "oauth2", not "{auth}"')
        method = r.string("signature_method", "HMAC-SHA256")
        if method not in ("HMAC-SHA256", "HMAC-SHA1"):
            problems.append(
                f'{path}.signature_method: must be "HMAC-SHA256" or "HMAC-SHA1", not "{method}"'
            )
        token_url = _url(
            problems, f"{path}.token_url", r.string("token_url"), schemes=("http", "https")
        )
        if auth == "oauth2" and token_url is None and "token_url" not in r.table:
            problems.append(f'{path}.token_url: required with auth = "oauth2"')
        if auth == "oauth1" and "token_url" in r.table:
            problems.append(f'{path}.token_url: only used with auth = "oauth2"')
        versions_raw = r.raw("versions")
        versions: tuple[str, ...] = DEFAULT_VERSIONS
        if versions_raw is not None:
            normalised = []
            if not isinstance(versions_raw, list) or not versions_raw:
                problems.append(f'{path}.versions: must be a non-empty list such as ["1.1", "1.2"]')
            else:
                for i, v in enumerate(versions_raw):
                    mapped = {"1.1": "v1p1", "v1p1": "v1p1", "1.2": "v1p2", "v1p2": "v1p2"}.get(
                        str(v)
                    )
                    if mapped is None:
                        problems.append(f'{path}.versions[{i}]: unknown OneRoster version "{v}"')
                    else:
                        normalised.append(mapped)
                versions = tuple(dict.fromkeys(normalised)) or versions
        if base_url and _plain_http(base_url):
            warnings.append(
                f"{path}.base_url: plain HTTP; student data would cross the network unencrypted"
            )
        if token_url and _plain_http(token_url):
            warnings.append(
                f"{path}.token_url: plain HTTP; the key and secret would cross the network "
                "unencrypted"
            )
        district_cfgs[name] = DistrictConfig(
            name=name,
            base_url=base_url or "",
            auth=auth or "oauth1",
            signature_method=method or "HMAC-SHA256",
            token_url=token_url,
            vendor_authorization=r.boolean("vendor_authorization", False),
            max_connections=r.integer("max_connections", None),
            max_wait=r.parsed("max_wait", 10.0, parse_duration),
            rate_limit=r.parsed("rate_limit", None, parse_rate),
            versions=versions,
            tls_verify=r.boolean("tls_verify", True),
            rewrite_hrefs=r.boolean("rewrite_hrefs", False),
        )
        if not district_cfgs[name].tls_verify:
            warnings.append(f"{path}.tls_verify: false; the district's certificate is not checked")

    connection_cfgs: dict[str, ConnectionConfig] = {}
    for app_id, table in connections_raw.items():
        path = f"connections.{app_id}"
        if not is_name(app_id):
            problems.append(f"{path}: appId must be {NAME_RULE}")
        r = _Reader(problems, env, path, table)
        r.unknown(_SCHEMA["connection"])
        vendor = r.string("vendor", required=True)
        district = r.string("district", required=True)
        if vendor is not None and vendor not in vendor_cfgs:
            problems.append(f'{path}.vendor: no vendor "{vendor}" in [vendors]')
        if district is not None and district not in district_cfgs:
            problems.append(f'{path}.district: no district "{district}" in [districts]')
        scopes: set[str] = set()
        scopes_raw = r.raw("scopes")
        if scopes_raw is None:
            problems.append(f"{path}.scopes: required (the district's Data to Share)")
        elif not isinstance(scopes_raw, list):
            problems.append(f"{path}.scopes: must be a list of scope names")
        else:
            for i, s in enumerate(scopes_raw):
                if not isinstance(s, str) or s not in SCOPES:
                    problems.append(f'{path}.scopes[{i}]: unknown scope "{s}"')
                else:
                    scopes.add(s)
        expires_raw = r.raw("expires")
        expires: date | None = None
        if expires_raw is not None:
            if isinstance(expires_raw, datetime):
                expires = expires_raw.date()
            elif isinstance(expires_raw, date):
                expires = expires_raw
            elif isinstance(expires_raw, str):
                # A quoted date (or one from ${ENV}) is what many people write; accept it.
                text = r.string("expires")
                if text is not None:
                    try:
                        expires = date.fromisoformat(text.strip())
                    except ValueError:
                        problems.append(
                            f'{path}.expires: invalid date "{text}" (write e.g. 2027-06-30)'
                        )
            else:
                problems.append(f"{path}.expires: must be a TOML date such as 2027-06-30")
        conn = ConnectionConfig(
            app_id=app_id,
            vendor=vendor or "",
            district=district or "",
            key=r.string("key", required=True) or "",
            secret=r.string("secret", required=True) or "",
            scopes=frozenset(scopes),
            enabled=r.boolean("enabled", True),
            expires=expires,
        )
        connection_cfgs[app_id] = conn
        vendor_cfg = vendor_cfgs.get(conn.vendor)
        district_cfg = district_cfgs.get(conn.district)
        gradebook = conn.scopes & {"gradebook.readonly", "gradebook.createput", "gradebook.delete"}
        if (
            gradebook
            and district_cfg is not None
            and district_cfg.vendor_authorization
            and vendor_cfg is not None
            and vendor_cfg.vendor_authorization is None
        ):
            warnings.append(
                f"{path}: district {conn.district} wants x-vendor-authorization on gradebook calls "
                f"but vendors.{conn.vendor}.vendor_authorization is not set"
            )
        left = conn.days_left(now)
        if expires is not None and left is not None:
            if left < 0:
                warnings.append(f"{path}.expires: expired on {expires.isoformat()}")
            elif left <= EXPIRY_WARNING.days:
                warnings.append(f"{path}.expires: expires in {left} days ({expires.isoformat()})")

    if problems:
        raise ConfigError(problems)
    return Config(
        server=server,
        admin=admin,
        store=store,
        vendors=vendor_cfgs,
        districts=district_cfgs,
        connections=connection_cfgs,
        warnings=tuple(warnings),
        source=source,
    )


def read_value_file(path: str) -> str:
    """The contents of a ``${file:/path}`` file, one trailing newline stripped (what
    ``kubectl create secret --from-file`` and ``echo`` leave); ValueError naming the path."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ValueError(f"file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"file {path} cannot be read ({reason})") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _secret_keys(sto: _Reader) -> tuple[bytes, ...]:
    """``[store] secret_keys``: base64url keys of 32 bytes (SPEC.md "Connections in the
    store"); each bad entry is a problem naming its index, never repeating the value."""
    raw = sto.raw("secret_keys")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        sto.problems.append("store.secret_keys: must be a list of strings")
        return ()
    keys: list[bytes] = []
    for i, item in enumerate(raw):
        name = f"secret_keys[{i}]"
        if not isinstance(item, str):
            sto.problems.append(f"store.{name}: must be a string")
            continue
        value = sto.interpolate(name, item)
        if value is None:
            continue
        try:
            keys.append(parse_key(value))
        except ValueError as exc:
            sto.problems.append(f"store.{name}: {exc}")
    return tuple(keys)


def _plain_http(url: str) -> bool:
    """An ``http://`` URL to anything but this machine (loopback is a sandbox or a sidecar)."""
    parts = urlsplit(url)
    loopback = ("localhost", "127.0.0.1", "::1")
    return parts.scheme == "http" and (parts.hostname or "") not in loopback


def _tables(problems: list[str], raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a table of tables")
        return {}
    return value


def load(path: str, env: Mapping[str, str] | None = None, *, now: datetime | None = None) -> Config:
    """Read and validate a config file; ``ConfigError`` for a missing file or bad TOML too."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: no such file"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from exc
    return validate(raw, env, now=now, source=path)


def infinite_campus_vendor_key(key: str) -> str | None:
    """The vendor key named by an ``InfiniteCampus_<vendorKey>_<GUID>`` consumer key."""
    match = _IC_KEY_RE.match(key)
    return match.group("vendor_key") if match else None
