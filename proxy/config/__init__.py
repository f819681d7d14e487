"""Configuration: TOML in, frozen dataclasses out (docs/configuration.md).

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
from typing import Any

from proxy.config.model import (
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
    as_text,
    details_text,
    expired,
    expiry_end,
    format_duration,
    infinite_campus_vendor_key,
    parse_duration,
    parse_listen,
    parse_rate,
    parse_size,
)
from proxy.config.reader import userinfo_problem
from proxy.config.validate import SCHEMA, validate
from proxy.errors import ConfigError


def read_file(path: str) -> bytes:
    """The bytes of a config file; ``ConfigError`` naming the file if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: no such file"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from exc


def parse_toml(text: bytes, source: str) -> dict[str, Any]:
    """A config file's bytes as TOML; ``ConfigError`` naming ``source`` if they are not."""
    try:
        return tomllib.loads(text.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from exc


def read_toml(path: str) -> dict[str, Any]:
    """The parsed TOML file; ``ConfigError`` (one line naming the path) for a missing or
    unreadable file or bad TOML."""
    return parse_toml(read_file(path), path)


def loads(
    text: bytes,
    *,
    source: str,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Config:
    """Validate a config file's bytes as read from ``source`` (which reloads read again);
    ``ConfigError`` for bad TOML too. ``serve --workers`` validates the exact bytes it then
    hands its workers."""
    return validate(parse_toml(text, source), env, now=now, source=source)


def load(path: str, env: Mapping[str, str] | None = None, *, now: datetime | None = None) -> Config:
    """Read and validate a config file; ``ConfigError`` for a missing file or bad TOML too."""
    return loads(read_file(path), source=path, env=env, now=now)


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
    "as_text",
    "details_text",
    "expired",
    "expiry_end",
    "format_duration",
    "infinite_campus_vendor_key",
    "load",
    "loads",
    "parse_duration",
    "parse_listen",
    "parse_rate",
    "parse_size",
    "parse_toml",
    "read_file",
    "userinfo_problem",
    "validate",
]
