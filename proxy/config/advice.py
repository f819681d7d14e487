"""What ``config validate`` advises about a file that is valid (docs/configuration.md).

These are warnings about how the file is written, not about what it configures, so they come
from the raw TOML (before ``${NAME}`` is replaced): a secret must come from the environment,
never sit in the file; ``scopes = []`` makes a connection that refuses every request; an unset
``public_url`` with ``trust_forwarded = false`` lets each request's ``Host`` header choose the
URL in every rewritten ``Link`` and ``href``. They never fail validation; ``serve`` leaves them
to ``config validate``, whose job is to read the file the way a reviewer would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Keys whose value is (or holds) a secret, per table kind; list-valued ones checked per item.
_SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "server": ("jwt_keys",),
    "admin": ("token",),
    "store": ("secret_keys",),
    "vendors": ("client_secret", "vendor_authorization"),
    "connections": ("secret",),
}
_NAMED = ("vendors", "connections")


def advice(raw: Mapping[str, Any]) -> list[str]:
    """Warnings for a config document (as parsed from TOML, not yet interpolated)."""
    out = [f"{path}: {_LITERAL}" for path in _literal_secrets(raw)]
    for app_id, table in _tables(raw, "connections"):
        if table.get("scopes") == []:
            out.append(
                f"connections.{app_id}.scopes: empty; every request to this connection is "
                "refused (403): list the district's Data to Share"
            )
    server = raw.get("server")
    server = server if isinstance(server, dict) else {}
    if not server.get("public_url") and server.get("trust_forwarded", False) is False:
        out.append(
            "server.public_url: not set, and trust_forwarded = false: rewritten Links and "
            "hrefs name whatever Host a request sends; set public_url (or trust_forwarded = "
            "true behind a load balancer that sets X-Forwarded-Host)"
        )
    return out


_LITERAL = "a secret written in the file; write ${NAME} and set NAME in the environment"


def _tables(raw: Mapping[str, Any], top: str) -> Iterator[tuple[str, dict[str, Any]]]:
    section = raw.get(top)
    if isinstance(section, dict):
        for name, table in section.items():
            if isinstance(table, dict):
                yield name, table


def _literal_secrets(raw: Mapping[str, Any]) -> Iterator[str]:
    for top, keys in _SECRET_KEYS.items():
        if top in _NAMED:
            tables = [(f"{top}.{name}", table) for name, table in _tables(raw, top)]
        else:
            table = raw.get(top)
            tables = [(top, table)] if isinstance(table, dict) else []
        for prefix, table in tables:
            for key in keys:
                value = table.get(key)
                values = value if isinstance(value, list) else [value]
                for i, item in enumerate(values):
                    if isinstance(item, str) and item and "${" not in item:
                        suffix = f"[{i}]" if isinstance(value, list) else ""
                        yield f"{prefix}.{key}{suffix}"
