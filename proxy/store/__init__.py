"""The token store, chosen by ``[store] url`` (docs/configuration.md).

``sqlite://<path>``: everything after ``sqlite://`` is the file's path, so the documented
``sqlite:///var/lib/oneroster-proxy/store.db`` is ``/var/lib/oneroster-proxy/store.db`` and
``sqlite://store.db`` is ``store.db`` relative to the working directory. ``redis://`` and
``rediss://`` (TLS) URLs go to redis-py as they are; ``redis+sentinel://HOST:PORT[,...]/SERVICE[/DB]``
follows the master that Redis Sentinel names (docs/configuration.md,
``proxy.store.sentinel``).
"""

from __future__ import annotations

from typing import Literal

from proxy.store.base import AuditEvent, CheckResult, InviteRecord, Store, TokenRecord, VendorAuth
from proxy.store.sentinel import SCHEME as SENTINEL_SCHEME
from proxy.store.sentinel import parse_redis_url, parse_sentinel_url

__all__ = [
    "AuditEvent",
    "CheckResult",
    "InviteRecord",
    "Store",
    "TokenRecord",
    "VendorAuth",
    "open_store",
    "store_kind",
]

_SQLITE = "sqlite://"
_USE = (
    "(use sqlite:///path, redis://host:6379/0 or "
    "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB])"
)


def store_kind(url: str) -> Literal["sqlite", "redis", "sentinel"]:
    """Which backend ``[store] url`` names, or ValueError naming ``store.url`` and what is wrong
    (never the password).

    The one reading of the URL: ``config validate`` reports its error and ``open_store`` builds
    from its answer, so a URL that validates always opens (docs/configuration.md). A Sentinel
    host list is read by our own parser, never ``urllib``, whose IPv6 checks differ between
    Python patch releases (Debian's 3.11.2 refuses ``127.0.0.1:26379,[::1]:26380``); a plain
    ``redis://`` URL is read as redis-py itself will read it."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme == "sqlite":
        if not rest:
            raise ValueError('store.url: "sqlite://" needs a path, e.g. sqlite:///var/lib/x.db')
        return "sqlite"
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
        return "sentinel"
    if scheme in ("redis", "rediss"):
        parse_redis_url(url)
        return "redis"
    shown = f'unsupported store "{scheme}"' if scheme else "a URL without a scheme"
    raise ValueError(f"store.url: {shown} {_USE}")


def open_store(url: str) -> Store:
    """The store for ``url``, not yet opened: ``await store.open()`` before use.

    ValueError (from ``store_kind``) for a URL no backend takes; the message never repeats a
    password.
    """
    if store_kind(url) == "sqlite":
        from proxy.store.sqlite import SqliteStore

        return SqliteStore(url[len(_SQLITE) :])
    # Imported here: with a sqlite store, the CLI starts without loading redis-py.
    from proxy.store.redis import RedisStore

    return RedisStore(url)
