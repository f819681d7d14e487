"""The token store, chosen by ``[store] url`` (docs/configuration.md).

``sqlite://<path>``: everything after ``sqlite://`` is the file's path, so the documented
``sqlite:///var/lib/oneroster-proxy/store.db`` is ``/var/lib/oneroster-proxy/store.db`` and
``sqlite://store.db`` is ``store.db`` relative to the working directory. ``redis://`` and
``rediss://`` (TLS) URLs go to redis-py as they are; ``redis+sentinel://HOST:PORT[,...]/SERVICE[/DB]``
follows the master that Redis Sentinel names (docs/configuration.md,
``proxy.store.sentinel``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy.store.base import AuditEvent, CheckResult, InviteRecord, Store, TokenRecord, VendorAuth

__all__ = [
    "AuditEvent",
    "CheckResult",
    "InviteRecord",
    "Store",
    "TokenRecord",
    "VendorAuth",
    "open_store",
]

_SQLITE = "sqlite://"


def open_store(url: str) -> Store:
    """The store for ``url``, not yet opened: ``await store.open()`` before use.

    ValueError for a URL no backend takes; the message never repeats a password.
    """
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE) :]
        if not path:
            raise ValueError('[store] url: "sqlite://" needs a path, e.g. sqlite:///var/lib/x.db')
        from proxy.store.sqlite import SqliteStore

        return SqliteStore(path)
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "redis+sentinel"):
        # Imported here: with a sqlite store, the CLI starts without loading redis-py.
        from proxy.store.redis import RedisStore

        return RedisStore(url)
    shown = f"{scheme}://..." if scheme else "a URL without a scheme"
    raise ValueError(
        f"[store] url: unsupported store {shown}; use sqlite:///path/to/store.db "
        "or redis://host:6379/0 (rediss:// for TLS, "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB] for Sentinel)"
    )
