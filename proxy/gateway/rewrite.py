"""Header rewriting between vendor and district (docs/http-api.md: ``Link`` headers
rewritten to ``<public_url>/<appId>/ims/oneroster/...``, end-to-end headers pass, hop-by-hop
headers do not; the vendor's ``Authorization`` and any inbound ``x-vendor-authorization`` never
reach the district).

Pure functions. Hop-by-hop headers are those of RFC 9110 §7.6.1 plus any named in ``Connection``.
``Link`` values are parsed as RFC 8288 §3 link-values: each ``<URI-Reference>`` outside a quoted
string is a target; parameters (even ones holding commas, quotes or ``<``) are kept byte for byte.

Choices, each from the point of view of an operator of a production gateway:

* A link to the district's ``<base>/ims/oneroster/...`` (absolute, scheme-relative ``//host/...``
  or absolute-path ``/base/ims/oneroster/...``) becomes ``<public prefix>...``; scheme and host
  compare case-insensitively, a default port equals no port, the path compares exactly. The
  remainder, query included, is kept exactly as the district wrote it. Links elsewhere (another
  host, another path of the district, relative references such as ``?offset=10``, which resolve
  against the proxy's URL already) are left untouched.
* ``Location`` and ``Content-Location`` (a 201 from a gradebook PUT) get the same treatment, so
  no district URL leaks to the vendor and a client can follow them.
* ``Set-Cookie`` is dropped and inbound ``Cookie`` is not forwarded: a district session belongs
  to the proxy's signed district credentials, not to the vendor, and every request is signed
  on its own.
* ``Forwarded``, every ``X-Forwarded*`` (one prefix rule: ``-For``, ``-User``,
  ``-Client-Cert`` and whatever a district's framework trusts next), ``X-Real-IP``,
  ``True-Client-IP``, ``CF-Connecting-IP`` and the other client-address headers below are not
  forwarded: the proxy is the district's client, and a vendor must not be able to claim an
  address, a user or a certificate to a district that trusts those headers. ``X-Request-Id``
  is set by the gateway on both sides, so the district's and the vendor's copies are dropped
  here.
* ``X-HTTP-Method-Override``, ``X-Method-Override``, ``X-HTTP-Method``, ``X-Original-Method``,
  ``X-Original-URL`` and ``X-Rewrite-URL`` are not forwarded: frameworks behind a district
  (Rails, Laravel, Symfony, IIS) act on them as the method or the path, and the scope check
  judged the request's own method and path.
* ``Content-Length`` is kept on responses (the body is forwarded unchanged, still encoded) and
  dropped on requests (the HTTP client sets it for the body it sends).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.errors import BadRequest

HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",  # not standard, but sent by old clients; never end-to-end
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Response headers not passed to the vendor besides hop-by-hop ones (see module docstring).
_RESPONSE_DROP: frozenset[str] = frozenset({"set-cookie", "set-cookie2", "x-request-id"})
# Request headers not passed to the district besides hop-by-hop ones (see module docstring).
_REQUEST_DROP: frozenset[str] = frozenset(
    {
        "host",
        # SECURITY: the vendor's credentials and vendor key are never the district's business.
        "authorization",
        "x-vendor-authorization",
        "cookie",
        "content-length",
        "expect",
        # SECURITY: addresses and identities a district may trust from its own balancer.
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
        "client-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "x-originating-ip",
        "x-remote-ip",
        "x-remote-addr",
        # SECURITY: another method or path than the one the scope check judged.
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
        "x-original-method",
        "x-original-url",
        "x-rewrite-url",
        "x-request-id",
    }
)
#: Request header names dropped by prefix (lower case): the whole forwarded family.
_REQUEST_DROP_PREFIXES: tuple[str, ...] = ("x-forwarded", "x-original-forwarded")
_URL_HEADERS = frozenset({"location", "content-location"})
_RESPONSE_DROPPED = HOP_BY_HOP | _RESPONSE_DROP
_RESPONSE_DROPPED_WITH_LENGTH = _RESPONSE_DROPPED | {"content-length"}
_REQUEST_DROPPED = HOP_BY_HOP | _REQUEST_DROP
_CONNECTION_OPTIONS = frozenset({"keep-alive", "close"})
_CONNECTION_NONE: frozenset[str] = frozenset()

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
# RFC 8288 link-value tokens: a quoted string (with backslash escapes), or a <URI-Reference>.
_LINK_TOKENS = re.compile(r'<([^>]*)>|"[^"\\]*(?:\\.[^"\\]*)*"?')


class _HeaderSource(Protocol):
    def items(self) -> Iterable[tuple[str, str]]: ...


# A collection, not any iterable: the headers are read twice (``Connection`` first).
Headers = Mapping[str, str] | _HeaderSource | Collection[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class UpstreamPrefix:
    """``<district.base_url>/ims/oneroster/``, parsed once (at config load) for matching."""

    scheme: str  # lower case
    host: str  # lower case, IPv6 literals keep their brackets
    port: int
    path: str  # ends with "/"
    # The canonical spelling ``scheme://host[:port]/path``: what a district writes in nearly
    # every Link, matched with one ``startswith`` before any parsing.
    literal: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        default = _DEFAULT_PORTS.get(self.scheme)
        port = "" if default == self.port else f":{self.port}"
        object.__setattr__(self, "literal", f"{self.scheme}://{self.host}{port}{self.path}")

    @classmethod
    def parse(cls, url: str) -> UpstreamPrefix:
        scheme, sep, after = url.partition("://")
        if not sep or not _SCHEME.fullmatch(scheme):
            raise ValueError(f"not an absolute URL: {url!r}")
        end = _authority_end(after, 0)
        authority = _split_authority(after[:end], scheme.lower())
        if authority is None:
            raise ValueError(f"bad authority in {url!r}")
        path = after[end:].split("?", 1)[0].split("#", 1)[0] or "/"
        if not path.endswith("/"):
            path += "/"
        return cls(scheme.lower(), authority[0], authority[1], path)

    def rewrite(self, url: str, public_prefix: str) -> str:
        """``url`` with this prefix replaced by ``public_prefix``; ``url`` itself (the same
        object) when it does not point under this prefix."""
        literal = self.literal
        if url.startswith(literal):
            return public_prefix + url[len(literal) :]
        if url.startswith("//"):
            rest = self._strip_authority(url, 2, self.scheme)
        elif url.startswith("/"):
            rest = url
        else:
            scheme, sep, _ = url.partition("://")
            if not sep or not _SCHEME.fullmatch(scheme) or scheme.lower() != self.scheme:
                return url
            rest = self._strip_authority(url, len(scheme) + 3, self.scheme)
        if rest is None:
            return url
        if rest.startswith(self.path):
            return public_prefix + rest[len(self.path) :]
        bare = self.path[:-1]  # ".../ims/oneroster" with nothing after, or only a query
        if rest.startswith(bare) and rest[len(bare) : len(bare) + 1] in ("", "?", "#"):
            return public_prefix.rstrip("/") + rest[len(bare) :]
        return url

    def _strip_authority(self, url: str, start: int, scheme: str) -> str | None:
        end = _authority_end(url, start)
        authority = _split_authority(url[start:end], scheme)
        if authority is None or authority != (self.host, self.port):
            return None
        return url[end:]


def _authority_end(text: str, start: int) -> int:
    for i in range(start, len(text)):
        if text[i] in "/?#":
            return i
    return len(text)


def _split_authority(authority: str, scheme: str) -> tuple[str, int] | None:
    # userinfo in a Link would be odd; such a URL is not ours to rewrite.
    if "@" in authority or not _HOST.fullmatch(authority):
        return None
    if authority.startswith("["):
        close = authority.index("]")
        host, port_text = authority[: close + 1], authority[close + 2 :]
    else:
        host, _, port_text = authority.partition(":")
    default = _DEFAULT_PORTS.get(scheme)
    if port_text:
        port = int(port_text)
    elif default is not None:
        port = default
    else:
        return None
    return host.lower(), port


def _prefix(upstream_prefix: str | UpstreamPrefix) -> UpstreamPrefix:
    if isinstance(upstream_prefix, UpstreamPrefix):
        return upstream_prefix
    return UpstreamPrefix.parse(upstream_prefix)


def rewrite_link(value: str, upstream_prefix: str | UpstreamPrefix, public_prefix: str) -> str:
    """Rewrite every target of an RFC 8288 ``Link`` header value that points under
    ``upstream_prefix`` (``<district.base_url>/ims/oneroster/``) to ``public_prefix``
    (``<public base>/<appId>/ims/oneroster/``). Everything else is kept byte for byte."""
    if "<" not in value:
        return value
    prefix = _prefix(upstream_prefix)
    marker = "<" + prefix.literal
    opened = value.count("<")
    if (
        value.count(marker) == opened
        and value.count(">") == opened
        and "\\" not in value
        and not any("<" in quoted for quoted in value.split('"')[1::2])
    ):
        # Every target is spelled the canonical way and no parameter holds a "<" (the common
        # case, e.g. rel="next"): a plain replacement gives what the scan below would.
        return value.replace(marker, "<" + public_prefix)
    return _rewrite_scan(value, prefix, public_prefix)


def _rewrite_scan(value: str, prefix: UpstreamPrefix, public_prefix: str) -> str:
    """The general case of ``rewrite_link``: every target parsed and judged on its own."""
    parts: list[str] = []
    copied = 0  # value[:copied] is already in parts
    # One C-level pass: quoted strings are skipped whole, so a "<" inside a parameter value is
    # never taken for a target; an unclosed "<" (a malformed tail) matches nothing.
    for match in _LINK_TOKENS.finditer(value):
        target = match.group(1)
        if target is None:
            continue
        new = prefix.rewrite(target, public_prefix)
        if new is not target:
            parts.append(value[copied : match.start(1)])
            parts.append(new)
            copied = match.end(1)
    if not parts:
        return value
    parts.append(value[copied:])
    return "".join(parts)


def _items(headers: Headers) -> Iterable[tuple[str, str]]:
    items = getattr(headers, "items", None)
    if items is not None:
        return items()  # type: ignore[no-any-return]
    return headers  # type: ignore[return-value]


def connection_tokens(values: Iterable[str]) -> frozenset[str]:
    """Header names listed in ``Connection`` values (RFC 9110 §7.6.1), lower case, except the
    ``keep-alive``/``close`` options that name no header (they are hop-by-hop anyway)."""
    names: set[str] = set()
    for value in values:
        names.update(t.strip().lower() for t in value.split(",") if t.strip())
    names -= _CONNECTION_OPTIONS
    return frozenset(names)


def _dropped(headers: Headers, always: frozenset[str]) -> frozenset[str]:
    """The header names not passed on: ``always`` and those that ``Connection`` lists.

    aiohttp's parsed headers (every request and response of the gateway) give their
    ``Connection`` values in one look-up, so the headers are still walked only once."""
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        values: Sequence[str] = headers.getall("Connection", ())
    else:
        values = [value for name, value in _items(headers) if name.lower() == "connection"]
    if not values:
        return always
    listed = connection_tokens(values)
    return always | listed if listed else always


def response_headers(
    upstream_headers: Headers,
    *,
    upstream_prefix: str | UpstreamPrefix,
    public_prefix: str,
    drop_length: bool = False,
) -> list[tuple[str, str]]:
    """The district's end-to-end response headers for the vendor, in order, repeated headers
    kept; ``Link``/``Location``/``Content-Location`` rewritten; hop-by-hop and the headers the
    module docstring lists dropped (and ``Content-Length`` with ``drop_length``, for a
    response whose own body sets it)."""
    dropped = _dropped(
        upstream_headers, _RESPONSE_DROPPED_WITH_LENGTH if drop_length else _RESPONSE_DROPPED
    )
    prefix = _prefix(upstream_prefix)
    out: list[tuple[str, str]] = []
    for name, value in _items(upstream_headers):
        lower = name.lower()
        if lower in dropped:
            continue
        if lower == "link":
            value = rewrite_link(value, prefix, public_prefix)
        elif lower in _URL_HEADERS:
            value = prefix.rewrite(value.strip(), public_prefix)
        # SECURITY: never let a value split the response head. The parser that read the
        # district's head refuses CR/LF/NUL in names and values, and aiohttp refuses to write
        # them, but a rewritten value is built here: checked again, cheaply.
        if "\r" in value or "\n" in value or "\x00" in value:
            continue
        out.append((name, value))
    return out


def _request_drop(name: str) -> bool:
    """Whether the request header ``name`` (as sent, any case) never reaches the district,
    by name or by prefix; ``Connection``'s own list aside."""
    lower = name.lower()
    return lower in _REQUEST_DROPPED or lower.startswith(_REQUEST_DROP_PREFIXES)


#: Header name as sent -> dropped or not: ``_request_drop`` decided once per spelling, so a
#: request pays one dictionary look-up per header (no case folding, no prefix test). The names
#: are the client's to choose: a full table starts again rather than grow (``_verdict``).
_VERDICTS: dict[str, bool] = {}
_VERDICTS_LIMIT = 1024


def _verdict(name: str) -> bool:
    if len(_VERDICTS) >= _VERDICTS_LIMIT:
        _VERDICTS.clear()
    verdict = _VERDICTS[name] = _request_drop(name)
    return verdict


def request_headers(inbound: Headers) -> list[tuple[str, str]]:
    """The vendor's end-to-end request headers to send to the district (before signing adds
    ``Authorization`` and the gateway adds ``X-Request-Id`` and ``x-vendor-authorization``):
    one pass over them."""
    listed = _dropped(inbound, _CONNECTION_NONE)
    verdict_of = _VERDICTS.get
    out: list[tuple[str, str]] = []
    unsafe = _UNSAFE_VALUE.search
    for name, value in _items(inbound):
        drop = verdict_of(name)
        if drop is None:
            drop = _verdict(name)
        if drop or (listed and name.lower() in listed):
            continue
        if unsafe(name) or unsafe(value):
            continue
        out.append((name, value))
    return out


def public_base(
    request_scheme: str,
    host: str | None,
    forwarded_proto: str | None,
    forwarded_host: str | None,
    trust_forwarded: bool,
    public_url: str | None,
) -> str:
    """``scheme://host`` (no trailing slash) of the proxy as the vendor sees it (docs/
    ``[server] public_url``): ``public_url`` if set; else the scheme and Host the request
    arrived with, taking ``X-Forwarded-Proto``/``X-Forwarded-Host`` (first value: the one the
    client-facing balancer set) only when ``trust_forwarded``. Raises BadRequest (400) for a
    Host that cannot be part of a URL."""
    if public_url:
        return public_url.rstrip("/")
    scheme = request_scheme
    if trust_forwarded and forwarded_proto:
        scheme = forwarded_proto.split(",", 1)[0].strip()
    if trust_forwarded and forwarded_host:
        host = forwarded_host.split(",", 1)[0].strip()
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadRequest("unsupported forwarded scheme")
    # SECURITY: the Host header is attacker-controlled and ends up in every rewritten Link; only
    # a plain host[:port] may pass (no spaces, "/", "@", quotes or control characters).
    if not host or len(host) > 255 or not _HOST.fullmatch(host):
        raise BadRequest("malformed Host header")
    return f"{scheme}://{host}"


def public_prefix(base: str, app_id: str) -> str:
    """``<public base>/<appId>/ims/oneroster/``: the target of rewritten Links."""
    return f"{base}/{app_id}/ims/oneroster/"


def upstream_prefix(base_url: str) -> UpstreamPrefix:
    """``<district.base_url>/ims/oneroster/``, parsed; build it once per district."""
    return UpstreamPrefix.parse(base_url.rstrip("/") + "/ims/oneroster/")
