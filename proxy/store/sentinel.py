"""``redis+sentinel://`` store URLs: Redis Sentinel through redis-py's asyncio Sentinel client.

docs/configuration.md:

    [store] url = "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]"

The proxy asks the sentinels for the master of ``SERVICE`` whenever it opens a connection
(``Sentinel.master_for``), so after a failover the next command, which meets a dead or demoted
connection, reconnects to the promoted replica. While no master is known the store raises
``StoreUnavailable`` as during any outage: cached tokens keep working, the rest get 503.

A user and password in the URL (``redis+sentinel://:pw@h1:26379,h2:26379/mymaster``)
authenticate to Redis and to the sentinels alike, as Sentinel deployments usually protect both
with one password. A port left out is Sentinel's default, 26379. IPv6 hosts are bracketed.

Writes that issue or revoke a token are acknowledged only once a replica has them
(``WAIT 1``, see ``RedisStore``): with Sentinel the replica is what survives the master.

Parsing lives here without importing redis-py, so ``config validate`` can name a bad URL
without loading a client; ``parse_redis_url`` reads plain ``redis://`` and ``rediss://`` URLs the
way redis-py will, so a URL that validates is one the client takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def display(self) -> str:
        """The URL without its credentials, for messages and logs."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"{SCHEME}://{hosts}/{self.service}/{self.db}"


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A ``redis://`` or ``rediss://`` URL: what messages show and the password to redact."""

    display: str
    password: str | None


def parse_redis_url(url: str) -> RedisURL:
    """``redis[s]://[[user]:password@]HOST[:PORT][/DB]``, split as redis-py's ``from_url`` will
    split it (``urllib``); ValueError naming ``store.url``, never the password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urllib's messages name the host or port part ("Invalid IPv6 URL", "Port out of
        # range 0-65535"), never the userinfo.
        scheme = url.partition("://")[0].lower()
        raise ValueError(f"store.url: not a valid {scheme}:// URL ({exc})") from None
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    display = f"{parts.scheme}://{shown}{f':{port}' if port else ''}{parts.path}"
    return RedisURL(display, parts.password)


def parse_sentinel_url(url: str) -> SentinelURL:
    """``redis+sentinel://[[user]:password@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]``.

    ValueError naming ``store.url`` and the part that is wrong; never the password."""
    prefix = f"{SCHEME}://"
    if not url.lower().startswith(prefix):
        raise ValueError(f"store.url: a Sentinel URL starts with {prefix}")
    rest = url[len(prefix) :]
    netloc, slash, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(part) for part in netloc.split(","))
    segments = path.split("/") if slash else []
    if not segments or not segments[0]:
        raise ValueError(
            "store.url: a Sentinel URL names the service after the hosts "
            "(redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB])"
        )
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ValueError(
            f'store.url: after the service "{segments[0]}" only a database number may follow '
            f"(/SERVICE/DB)"
        )
    db = int(segments[1]) if len(segments) == 2 else 0
    return SentinelURL(sentinels, unquote(segments[0]), db, username, password)


def _host_port(part: str) -> tuple[str, int]:
    part = part.strip()
    if not part:
        raise ValueError("store.url: a Sentinel URL needs at least one HOST:PORT (none empty)")
    if part.startswith("["):
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f'store.url: bad sentinel address "{part}" (write [::1]:26379)')
        port_text = tail[1:] if tail else ""
    elif part.count(":") > 1:
        raise ValueError(f'store.url: bad sentinel address "{part}" (bracket IPv6: [::1]:26379)')
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise ValueError(f'store.url: sentinel address "{part}" has no host')
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f'store.url: sentinel address "{part}": port must be 1-65535')
    return host, int(port_text)


def master_client(parsed: SentinelURL, **connection: Any) -> tuple[Any, Any]:
    """``(client, sentinel)``: a ``redis.asyncio.Redis`` whose connections go to the current
    master of the service, and the ``Sentinel`` it asks (close both).

    ``connection`` holds the options of every Redis connection (timeouts, retry, decoding);
    the sentinels are asked with the same timeouts, retry and credentials, so a dead sentinel
    costs one refused connection, not a backoff."""
    from redis.asyncio.sentinel import Sentinel

    connection.setdefault("connection_class", _following_connection_class())
    auth: dict[str, Any] = {"username": parsed.username, "password": parsed.password}
    sentinel_kwargs = {
        k: v for k, v in connection.items() if k.startswith("socket_") or k == "retry"
    }
    sentinel_kwargs.update(auth)
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    client = sentinel.master_for(parsed.service, db=parsed.db, **auth, **connection)
    return client, sentinel


def _following_connection_class() -> type:
    """A Sentinel-managed connection that asks for the master on every reconnect.

    redis-py's ``SentinelManagedConnection`` resolves the master in ``connect()``, but a
    connection dropped inside a command's retry reconnects through ``connect_check_health()``
    to the address it had: after a failover that is the old master, refused while it is dead
    and read-only once it is back as a replica, so the retry is wasted and the command fails.
    """
    from redis.asyncio.sentinel import SentinelManagedConnection

    class FollowingConnection(SentinelManagedConnection):
        async def connect_check_health(
            self, check_health: bool = True, retry_socket_connect: bool = True
        ) -> None:
            if not self.is_connected and self.connection_pool.is_master:
                self.host, self.port = await self.connection_pool.get_master_address()
            await super().connect_check_health(
                check_health=check_health, retry_socket_connect=retry_socket_connect
            )

    return FollowingConnection
