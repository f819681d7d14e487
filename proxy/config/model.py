"""The configuration as data: frozen dataclasses, one per TOML section, and the value parsers.

docs/configuration.md. Each dataclass's fields are its section's keys (``proxy.config.
validate`` derives the accepted keys from them); everything the request hot path needs is
precomputed from these at load (``proxy.gateway.runtime``). ``expiry_end`` is the one definition of
when a connection stops working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from proxy.courtesy.schedule import Pause, Window
from proxy.scopes import scope_uri

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
_RATE_NAMES = {float(seconds): unit for unit, seconds in _RATE_UNITS.items()}
_IC_KEY_RE = re.compile(
    r"^InfiniteCampus_(?P<vendor_key>.+)_(?P<guid>[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}"
    r"-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12})$"
)
EXPIRY_WARNING = timedelta(days=30)
DEFAULT_VERSIONS: tuple[str, ...] = ("v1p1", "v1p2")
#: OneRoster 1.1 user records carry a password: no vendor receives it unless a district says so.
DEFAULT_DROP_FIELDS: tuple[str, ...] = ("users.password",)


#: The longest duration accepted anywhere (docs/configuration.md): ten years.
MAX_DURATION = 3653 * 86400.0


def parse_duration(value: str) -> float:
    """``30s``, ``15m``, ``24h``, ``7d`` (and ``500ms``) to seconds; at most ten years, so
    every duration fits a ``timedelta`` and a date (ValueError above)."""
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'invalid duration "{value}" (write e.g. 30s, 15m, 24h, 7d)')
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not seconds <= MAX_DURATION:
        raise ValueError(f'duration "{value}" is over ten years')
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as a person writes them, the way ``parse_duration`` reads them: the largest
    unit that divides evenly (``5s``, ``90m``, ``24h``, ``7d``; ``500ms`` below a second)."""
    if 0 < seconds < 1 or seconds != int(seconds):
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def as_text(value: Any) -> str:
    """A value as a person reads it in text output, never a Python repr (docs/commands.md):
    absent is ``-``, a boolean ``yes`` / ``no``, a list comma-separated, a date ISO 8601."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value):
        return "; ".join(as_text(v) for v in value)  # a district's windows or pauses
    if isinstance(value, list | tuple | frozenset | set):
        return ",".join(as_text(v) for v in value)
    if isinstance(value, Mapping):
        return " ".join(f"{k}={as_text(v)}" for k, v in value.items())
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def details_text(detail: Mapping[str, Any], *, leave_out: tuple[str, ...] = ()) -> str:
    """An audit event's details as ``key=value`` text: a ``*_seconds`` number as a duration
    under the key without its suffix (``ttl=24h``, ``grace=5s``), every value by ``as_text``."""
    parts = []
    for key, value in sorted(detail.items()):
        if key in leave_out:
            continue
        if key.endswith("_seconds") and (value is None or isinstance(value, int | float)):
            key = key.removesuffix("_seconds")
            value = None if value is None else format_duration(float(value))
        parts.append(f"{key}={as_text(value)}")
    return ", ".join(parts)


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

    def __str__(self) -> str:
        """As a config file writes it (``20/s``, ``1200/m``): what ``parse_rate`` reads."""
        unit = _RATE_NAMES.get(self.period)
        if unit is None:
            return f"{self.per_second:g}/s"
        count = int(self.count) if float(self.count).is_integer() else self.count
        return f"{count}/{unit}"


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
    # docs/checklist.md "Background checks": seconds between checklist rounds (default 6h, so
    # the console's board fills on its own); 0 = off.
    check_interval: float = 6 * 3600.0
    # docs/configuration.md: intake may reach loopback / private / link-local addresses.
    intake_private_networks: bool = False


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
    # Days of the access ledger kept (docs/configuration.md "Sharing policy").
    ledger_days: int = 400


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
    # Rewrite JSON ``href`` values naming the district to the proxy (proxy/gateway/hrefs.py); on
    # by default: a vendor never receives a district URL it cannot call (the scan's cost on the
    # 1 MB page is in bench/README.md).
    rewrite_hrefs: bool = True
    # docs/configuration.md "SIS courtesy": the zone windows and pauses are read in, the
    # peak-hour windows (each its own cap) and the pauses (nothing is sent).
    timezone: str = "UTC"
    windows: tuple[Window, ...] = ()
    pauses: tuple[Pause, ...] = ()

    @property
    def upstream_prefix(self) -> str:
        return f"{self.base_url}/ims/oneroster/"


def expiry_end(expires: date) -> datetime:
    """The first instant a connection with ``expires`` no longer works. ``expires`` is inclusive
    (docs/configuration.md): the connection works through that whole day, UTC, so it ends at
    the next midnight UTC. The one definition the gateway, ``check``, the expiry metric and the
    config warnings share."""
    return datetime.combine(expires + timedelta(days=1), time.min, tzinfo=UTC)


def expired(expires: date | None, now: datetime) -> bool:
    """Whether a connection with ``expires`` (None: never) no longer works at ``now``."""
    return expires is not None and now.astimezone(UTC) >= expiry_end(expires)


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
    # Top-level record fields the vendor never receives (docs/configuration.md "Sharing policy").
    drop_fields: tuple[str, ...] = DEFAULT_DROP_FIELDS
    # Not a TOML key: True for a connection kept in the store (changed with the CLI's
    # ``connections`` commands, the admin API or the console, not in the file).
    stored: bool = False

    @property
    def ends_at(self) -> datetime | None:
        """When the connection stops working (None: never); see ``expiry_end``."""
        return None if self.expires is None else expiry_end(self.expires)

    def expired(self, now: datetime) -> bool:
        return expired(self.expires, now)

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


def infinite_campus_vendor_key(key: str) -> str | None:
    """The vendor key named by an ``InfiniteCampus_<vendorKey>_<GUID>`` consumer key."""
    match = _IC_KEY_RE.match(key)
    return match.group("vendor_key") if match else None
