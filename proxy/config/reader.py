"""Reading one TOML table into typed values, one problem per bad key (docs/configuration.md).

``Reader`` never raises: a bad value is recorded as ``<key path>: <what is wrong>`` and its
default used, so validation can go on and report every problem at once. ``${ENV}`` is
interpolated in every string; a missing variable names its key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import MISSING, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
# ``${NAME}`` from the environment, ``${file:/path}`` from a file (docs/configuration.md:
# Kubernetes Secrets mounted as files); both read again on every load, so SIGHUP.
ENV_RE = re.compile(r"\$\{(?:file:([^}]+)|([A-Za-z_][A-Za-z0-9_]*))\}")


def section_keys(cls: type, *named_by_table: str) -> frozenset[str]:
    """The TOML keys of a section: its dataclass's fields, less those its table name gives
    (a vendor's ``name``, a connection's ``app_id``)."""
    return frozenset(f.name for f in fields(cls) if f.name not in named_by_table)


def defaults(cls: type) -> dict[str, Any]:
    """The dataclass's field defaults by name. Read from the fields, not the class: with
    ``slots=True`` a class attribute of a field is a slot descriptor, not its default."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


#: The largest integer a config key takes (a count, never a size in bytes): what fits a
#: sqlite INTEGER and a Redis field with room to spare.
MAX_INTEGER = 1_000_000


class Reader:
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

    def unknown(self, allowed: AbstractSet[str]) -> None:
        for name in self.table:
            if name not in allowed:
                hint = closest(name, allowed)
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

        result = ENV_RE.sub(sub, value)
        for problem in missing:
            self.problems.append(f"{self.key(name)}: {problem}")
        return None if missing else result

    def strings(self, name: str, parse: Callable[[str], T]) -> list[T]:
        """A list of strings, each interpolated and parsed; one problem per bad entry, naming
        its index (``name[i]``) and never repeating the value (these lists hold keys)."""
        raw = self.table.get(name)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problems.append(f"{self.key(name)}: must be a list of strings")
            return []
        values: list[T] = []
        for i, item in enumerate(raw):
            key = f"{name}[{i}]"
            if not isinstance(item, str):
                self.problems.append(f"{self.key(key)}: must be a string")
                continue
            text = self.interpolate(key, item)
            if text is None:
                continue
            try:
                values.append(parse(text))
            except ValueError as exc:
                self.problems.append(f"{self.key(key)}: {exc}")
        return values

    def boolean(self, name: str, default: bool) -> bool:
        value = self.table.get(name, default)
        if not isinstance(value, bool):
            self.problems.append(f"{self.key(name)}: must be true or false")
            return default
        return value

    def integer(
        self, name: str, default: int | None, *, minimum: int = 1, maximum: int = MAX_INTEGER
    ) -> int | None:
        value = self.table.get(name, default)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.problems.append(f"{self.key(name)}: must be an integer >= {minimum}")
            return default
        if value > maximum:
            self.problems.append(f"{self.key(name)}: must be at most {maximum}")
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


def closest(name: str, allowed: AbstractSet[str]) -> str | None:
    matches = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.75)
    return matches[0] if matches else None


def url(
    problems: list[str], key: str, value: str | None, *, schemes: tuple[str, ...]
) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # ValueError for a port that is not one
    except ValueError as exc:
        problems.append(f"{key}: invalid URL ({exc}; a bad host or port)")
        return None
    if "@" in parts.netloc:
        # Credentials belong in their own keys, never in a URL that logs and pages show.
        problems.append(f"{key}: must not contain a user name or password (user:pass@)")
        return None
    if parts.scheme not in schemes or not parts.hostname:
        problems.append(
            f'{key}: invalid URL "{value}" (expected {" or ".join(schemes)}://host/...)'
        )
        return None
    if parts.query or parts.fragment:
        problems.append(f"{key}: must not contain a query or fragment")
        return None
    refused = userinfo_problem(key, value)
    if refused:
        problems.append(refused)
        return None
    return value.rstrip("/")


def userinfo_problem(key: str, value: str) -> str | None:
    """The problem of a URL that carries a user name or password (``https://user:pass@host/``),
    naming ``key`` and never repeating the URL; None when it carries none.

    SECURITY: userinfo in a district URL is a credential in a place every listing, log line
    and error message shows (RFC 3986 §3.2.1 deprecates it); every interface that takes a
    URL (config file, CLI, admin API, console, intake) refuses it through this function."""
    if "@" in urlsplit(value).netloc:
        return f"{key}: must not contain a user name or password (user:pass@)"
    return None


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


def plain_http(url: str) -> bool:
    """An ``http://`` URL to anything but this machine (loopback is a sandbox or a sidecar)."""
    parts = urlsplit(url)
    loopback = ("localhost", "127.0.0.1", "::1")
    return parts.scheme == "http" and (parts.hostname or "") not in loopback


def tables(problems: list[str], raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a table of tables")
        return {}
    return value
