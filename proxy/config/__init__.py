"""Configuration: TOML in, frozen dataclasses out (SPEC.md "Config (TOML)").

``model`` holds the dataclasses (one per section, their fields the section's keys) and the
value parsers; ``validate`` the one side-effect-free function that ``serve``, SIGHUP,
``POST /admin/reload``, ``config validate`` and ``check`` all use, one small validator per
section, every problem reported at once; ``reader`` the typed reading of one table. Import
from here: ``from proxy.config import Config, load``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import datetime

from ..errors import ConfigError
from .model import (
    DEFAULT_VERSIONS,
    EXPIRY_WARNING,
    AdminConfig,
    Config,
    ConnectionConfig,
    DistrictConfig,
    Listen,
    Rate,
    ServerConfig,
    StoreConfig,
    VendorConfig,
    expiry_end,
    infinite_campus_vendor_key,
    parse_duration,
    parse_listen,
    parse_rate,
    parse_size,
)
from .validate import SCHEMA, validate


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


__all__ = [
    "DEFAULT_VERSIONS",
    "EXPIRY_WARNING",
    "SCHEMA",
    "AdminConfig",
    "Config",
    "ConfigError",
    "ConnectionConfig",
    "DistrictConfig",
    "Listen",
    "Rate",
    "ServerConfig",
    "StoreConfig",
    "VendorConfig",
    "expiry_end",
    "infinite_campus_vendor_key",
    "load",
    "parse_duration",
    "parse_listen",
    "parse_rate",
    "parse_size",
    "validate",
]
