"""Gateway path parsing and traversal refusal (docs/http-api.md: paths that decode or
normalise outside ``/ims/oneroster/`` are refused with 400, before any upstream request).

The proxy forwards the vendor's path byte for byte (``<base>/ims/oneroster/`` + the raw rest), so
it must be sure that no district, however it decodes and normalises a path, ends up outside
``<base>/ims/oneroster/``. Servers differ: some percent-decode once, some twice (a decoding proxy
in front of the application), some treat ``\\`` as ``/`` (IIS, Windows), some strip ``;params``
before resolving ``..`` (Tomcat: ``/..;/``), some trim trailing dots and spaces (Windows), some
apply Unicode compatibility folding (``%EF%BC%8F`` FULLWIDTH SOLIDUS -> ``/``), and all remove
dot-segments (RFC 3986 §5.2.4). Rather than repair a path for one of them, the proxy refuses
every path that is dangerous under any of them.

A raw rest is accepted only if every segment:

* consists of RFC 3986 ``pchar`` characters (unreserved, sub-delims, ``:``, ``@``) and valid
  ``%XX`` escapes: a raw ``\\``, space, control or non-ASCII byte is refused;
* decodes (once) to valid UTF-8 without ``/``, ``\\``, ``?``, ``#``, control or format characters
  (Unicode categories Cc, Cf, Cs, Zl, Zp);
* is not dot-like: after removing a ``;params`` suffix and trimming spaces, dots and ``+`` (a space
  for some decoders), something must remain; so ``.``, ``..``, ``...``, ``..;x``, ``.. `` and
  ``;x`` are refused;
* passes the same checks after NFKC folding, and after every further percent-decoding (double
  and deeper encodings such as ``%252e%252e``, ``%25%32%65``), up to four levels; a segment still
  holding escapes after four decodings is refused.

Empty segments (``//``) are refused, except one trailing slash (``v1p1/users/``), which is
harmless and which real clients send. Under these rules the raw rest never needs re-encoding:
it is a valid RFC 3986 path and is forwarded as received (:func:`needs_reencoding`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from proxy.errors import PathRefused
from proxy.names import is_name

ONEROSTER_PREFIX = "/ims/oneroster/"

# RFC 3986 pchar without "%" and ";": segments made only of these decode to themselves.
_FAST_REST = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/]*")
# RFC 3986 pchar (unreserved / pct-encoded / sub-delims / ":" / "@"), one segment.
_PCHAR_SEGMENT = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*")
_PCT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# ASCII that must never appear in a decoded segment: separators, query/fragment delimiters and
# control characters (a decoded %0a would split a header or a log line downstream).
_FORBIDDEN_ASCII = frozenset("/\\?#" + "".join(map(chr, range(0x20))) + "\x7f")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_MAX_DECODINGS = 4


@dataclass(frozen=True, slots=True)
class Target:
    """A checked gateway path."""

    app_id: str
    rest: str  # decoded once, checked: the input of proxy.scopes.classify
    raw_rest: str  # exactly as received (still percent-encoded): forwarded byte for byte


def parse_target(raw_path: str) -> Target:
    """Split ``/<appId>/ims/oneroster/<rest>`` (``request.raw_path`` without the query string)
    and check it; raise :class:`~proxy.errors.PathRefused` (400) for anything malformed or
    traversing."""
    if not raw_path.startswith("/"):
        raise PathRefused("path must start with /")
    slash = raw_path.find("/", 1)
    if slash < 0:
        raise PathRefused("path must be /<appId>/ims/oneroster/...")
    app_id = raw_path[1:slash]
    # SECURITY: the appId segment is forwarded nowhere, but it names the connection: only a
    # name that config validation accepts (never a dot-segment) is looked up.
    if not is_name(app_id):
        raise PathRefused("malformed appId")
    if not raw_path.startswith(ONEROSTER_PREFIX, slash):
        raise PathRefused("path must be /<appId>/ims/oneroster/...")
    raw_rest = raw_path[slash + len(ONEROSTER_PREFIX) :]
    return Target(app_id, check_rest(raw_rest), raw_rest)


def check_rest(raw_rest: str) -> str:
    """The decoded form of ``raw_rest`` (the raw path after ``/ims/oneroster/``); raises
    PathRefused if any reading of it could leave ``/ims/oneroster/``."""
    if _FAST_REST.fullmatch(raw_rest):
        # The common case: nothing to decode, so only empty segments (all but a trailing one)
        # and dot-like segments (here: made of "." and "+" only, so starting with one) can hurt.
        if "//" in raw_rest or raw_rest.startswith("/"):
            raise PathRefused("empty path segment")
        slashed = "/" + raw_rest
        if "/." in slashed or "/+" in slashed:
            for segment in raw_rest.split("/"):
                if segment and _dot_like(segment):
                    raise PathRefused("dot-segment in path")
        return raw_rest
    segments = raw_rest.split("/")
    last = len(segments) - 1
    decoded: list[str] = []
    for i, segment in enumerate(segments):
        if segment == "":
            if i != last:
                raise PathRefused("empty path segment")
            decoded.append("")
            continue
        decoded.append(_check_segment(segment))
    return "/".join(decoded)


def needs_reencoding(raw_rest: str) -> bool:
    """Whether ``raw_rest`` is not already a valid RFC 3986 path. False for every ``raw_rest``
    that :func:`parse_target` accepted: forward it as is (yarl ``URL(..., encoded=True)``)."""
    return not all(_PCHAR_SEGMENT.fullmatch(s) for s in raw_rest.split("/"))


def _dot_like(segment: str) -> bool:
    # SECURITY: Tomcat drops ";params" before resolving "..", Windows trims trailing dots and
    # spaces, and some decoders read "+" as a space: "..;x", ".. ", "..+" all become "..".
    core = segment.split(";", 1)[0]
    return core.strip(" .+") == ""


def _check_segment(raw: str) -> str:
    if not _PCHAR_SEGMENT.fullmatch(raw):
        if _BAD_PCT.search(raw):
            raise PathRefused("invalid percent-encoding in path")
        raise PathRefused("character not allowed in path")
    try:
        once = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused("path does not decode to UTF-8") from None
    _check_decoded(once, 1)
    return once


def _check_decoded(text: str, level: int) -> None:
    """Refuse ``text`` (a segment after ``level`` percent-decodings) if it, its NFKC folding or
    any further decoding of it is dangerous."""
    if _dot_like(text):
        raise PathRefused("dot-segment in path")
    if text.isascii():
        if not _FORBIDDEN_ASCII.isdisjoint(text):
            raise PathRefused("forbidden character in path segment")
    else:
        for ch in text:
            if ch in _FORBIDDEN_ASCII or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
                raise PathRefused("forbidden character in path segment")
        folded = unicodedata.normalize("NFKC", text)
        if folded != text:
            # SECURITY: U+FF0F, U+2024 and friends fold to "/" and "." on servers that normalise.
            _check_decoded(folded, level)
    if "%" in text and _PCT_ESCAPE.search(text):
        # SECURITY: a district behind a decoding proxy decodes twice: %252e%252e -> %2e%2e -> ..
        if level >= _MAX_DECODINGS:
            raise PathRefused("path is percent-encoded too many times")
        if _BAD_PCT.search(text):
            # Not valid percent-encoding at this level, so no decoder reads it as an escape
            # sequence, except byte by byte: check each escape's neighbourhood the same way.
            again = _decode_lenient(text)
        else:
            again = unquote_to_bytes(text).decode("utf-8", "surrogateescape")
        if again != text:
            _check_decoded(again, level + 1)


def _decode_lenient(text: str) -> str:
    return _PCT_ESCAPE.sub(lambda m: chr(int(m.group(0)[1:], 16)), text)
