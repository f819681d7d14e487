"""Where an intake may send the proxy: URLs typed by an outsider and the addresses they reach.

THREAT_MODEL.md ("The intake link") and docs/http-api.md ("District intake"). A URL typed on
the intake page (base URL, token URL) is refused, naming the field, when it has userinfo, a
query, a fragment, a scheme other than http/https, no host, a bad port or characters that do
not make a URL. Unless ``[server] intake_private_networks = true``, every address its host
resolves to must be public: loopback, private (RFC 1918, RFC 4193), link-local, shared
(RFC 6598), unspecified, multicast and reserved addresses are refused, IPv4-mapped IPv6
(``::ffff:127.0.0.1``) judged as the IPv4 address it carries.

``PinnedResolver`` is the aiohttp resolver of an intake's own client session: it resolves each
host once, judges every address of the answer, and hands the connector only those addresses
for the rest of the intake, so the proxy connects to the address it checked (a second DNS
answer, as in DNS rebinding, is never asked for).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from proxy.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT


class Refused(BadRequest):
    """A typed URL or the address it reaches is refused; the description names the field."""


class AddressRefused(OSError):
    """A host resolved to an address intake does not reach (an OSError, so that aiohttp's
    connector reports it as a connection failure if it ever gets this far)."""


def forbidden(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached from an intake, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    kinds = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("link-local", address.is_link_local),
        ("shared (RFC 6598)", isinstance(address, ipaddress.IPv4Address) and address in _SHARED),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for kind, hit in kinds:
        if hit:
            return kind
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_typed_url(field: str, value: str, *, private_ok: bool) -> SplitResult:
    """``value`` split, or ``Refused`` naming ``field`` and what is wrong with it."""
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError on a port out of range or not a number
        host = parts.hostname
    except ValueError as exc:
        raise Refused(f"{field}: not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise Refused(f"{field}: must start with https:// (or http://)")
    if "@" in parts.netloc or parts.username is not None:
        raise Refused(f"{field}: must not hold a user name or password")
    if parts.query or "?" in value:
        raise Refused(f"{field}: must not hold a query (?...)")
    if parts.fragment or "#" in value:
        raise Refused(f"{field}: must not hold a fragment (#...)")
    if not host:
        raise Refused(f"{field}: has no host name")
    if port == 0:
        raise Refused(f"{field}: port 0 is not a port")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise Refused(f"{field}: the host name is not valid") from exc
    if any(c in host for c in " \t\r\n\\/%") or not value.isprintable():
        raise Refused(f"{field}: the host name is not valid")
    literal = _literal(host)
    if literal is not None and not private_ok:
        why = forbidden(literal)
        if why is not None:
            raise Refused(f"{field}: {host} is a {why} address, which intake does not reach")
    return parts


class PinnedResolver(AbstractResolver):
    """Resolve each host once; refuse a non-public answer (unless allowed); then keep answering
    the same addresses (docs: the module's own docstring)."""

    def __init__(self, *, private_ok: bool) -> None:
        self.private_ok = private_ok
        self._pinned: dict[tuple[str, int, int], list[ResolveResult]] = {}
        self._lock = asyncio.Lock()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        key = (host, port, int(family))
        async with self._lock:
            if key not in self._pinned:
                self._pinned[key] = await self._lookup(host, port, family)
            return self._pinned[key]

    async def _lookup(
        self, host: str, port: int, family: socket.AddressFamily
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        except (OSError, UnicodeError) as exc:
            raise OSError(f"{host} could not be resolved") from exc
        out: list[ResolveResult] = []
        for fam, _, proto, _, address in infos:
            ip = str(address[0]).partition("%")[0]
            if not self.private_ok:
                why = forbidden(ipaddress.ip_address(ip))
                if why is not None:
                    # SECURITY: one refused address refuses the host: a name that answers with
                    # a public and a private address would otherwise pick either.
                    raise AddressRefused(
                        f"{host} resolves to a {why} address, which intake does not reach"
                    )
            out.append(
                {
                    "hostname": host,
                    "host": ip,
                    "port": int(address[1]),
                    "family": fam,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if not out:
            raise OSError(f"{host} could not be resolved")
        return out

    async def close(self) -> None:
        self._pinned.clear()
