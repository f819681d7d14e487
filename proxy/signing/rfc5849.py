"""The building blocks of an OAuth 1.0a signature (RFC 5849 §3.4-§3.6), as pure functions.

Each section of the RFC is one group of functions below, in the RFC's order, so the code reads
against the text side by side:

- §3.6      percent encoding;
- §3.4.1.3.1 parameter sources: the query and a single-part form-urlencoded body, both decoded
  as ``application/x-www-form-urlencoded`` (``+`` is a space), on every method, GET included;
- §3.4.1.2  base string URI: lowercase scheme and host, default port dropped, path raw;
- §3.4.1.3.2 normalisation: each name and value encoded (§3.6), sorted, joined;
- §3.4.1.1  signature base string; §3.4.2 HMAC over it with the key ``enc(secret)&``.

``signature_base_string`` and ``hmac_signature`` are the reference form of each step;
``proxy.signing.oauth1.OAuth1Signer`` assembles the same steps with what depends only on the
connection computed once, and agrees with them (and with oauthlib) byte for byte.
"""

from __future__ import annotations

import binascii
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote, urlsplit

from proxy.forms import form_text

__all__ = [
    "SIGNATURE_METHODS",
    "base_string_uri",
    "hmac_signature",
    "normalize_parameters",
    "percent_encode",
    "signature_base_string",
]

# signature method name -> hashlib name (RFC 5849 §3.4.2; HMAC-SHA256 is OneRoster 1.1's default)
SIGNATURE_METHODS: Final[dict[str, str]] = {"HMAC-SHA256": "sha256", "HMAC-SHA1": "sha1"}

# §3.6: the unreserved characters are the only ones left as they are.
_UNRESERVED_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_U: Final = r"A-Za-z0-9\-._~"
_UNRESERVED: Final = re.compile(f"[{_U}]*+")
# An escape of an ASCII octet that is not unreserved, in upper-case hex: what §3.6 writes.
_E: Final = r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF])"
# The query and form fields are decoded and re-encoded (§3.4.1.3.1, §3.4.1.3.2), but most
# raw strings need neither step, and regular expressions at C speed tell which:
# - canonical: unreserved characters and upper-case escapes of the other ASCII octets only,
#   decoding and re-encoding give it back unchanged (``limit=100``,
#   ``filter=familyName%3D%27O%27Brien%27``);
# - simple: also other raw ASCII characters ("+", encodeURIComponent's raw ``'()*!``, ","),
#   whose encodings _encode_simple substitutes one by one, escapes left as they are.
# Anything else (lower-case or needless escapes, non-ASCII, "%" without two hex digits) is
# decoded and re-encoded in full.
# SECURITY: possessive quantifiers (Python 3.11): the query is the vendor's, and a near miss
# must fail in linear time, never by backtracking (ReDoS).
_CANONICAL: Final = f"[{_U}]*+(?:{_E}[{_U}]*+)*+"
_PLAIN: Final = r"\x00-\x24\x27-\x3c\x3e-\x7f"  # ASCII but "%", "&" and "="
_SIMPLE: Final = f"[{_PLAIN}]*+(?:{_E}[{_PLAIN}]*+)*+"


def _form_of(component: str) -> re.Pattern[str]:
    """A form string (``name[=value]`` fields joined by ``&``) of such components."""
    field = f"{component}(?:={component})?+"
    return re.compile(f"{field}(?:&{field})*+")


_CANONICAL_FORM: Final = _form_of(_CANONICAL)
_SIMPLE_COMPONENT: Final = re.compile(_SIMPLE)
_SIMPLE_FORM: Final = _form_of(_SIMPLE)
# A character of a simple component that _encode_simple changes.
_NEEDS_ENCODING: Final = re.compile(r"[^A-Za-z0-9\-._~%&=]")
# A raw path made of unreserved characters, "/" and "%" needs only those two re-encoded (§3.6).
_SIMPLE_PATH: Final = re.compile(f"[{_U}/%]*+")
# scheme "://" authority, the authority ending at the first "/", "?" or "#" (RFC 3986 §3.2).
_ORIGIN: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# §3.6 Percent Encoding ------------------------------------------------------------------------

# Each octet (as the code point of the same value) -> itself if unreserved, else "%XX". Used on
# the latin-1 view of a string's UTF-8 bytes, so one C-level str.translate encodes a string;
# urllib.parse.quote does the same byte by byte in Python, three times slower.
_ENCODE_TABLE: Final[dict[int, str]] = {
    octet: chr(octet) if chr(octet) in _UNRESERVED_CHARS else f"%{octet:02X}"
    for octet in range(256)
}


# What _encode_simple writes for each character _NEEDS_ENCODING finds: "+" is a space, the
# rest their own escape ("%", "&" and "=" never reach it: escapes and separators stay).
_SIMPLE_ESCAPES: Final[dict[str, str]] = {
    **{chr(octet): _ENCODE_TABLE[octet] for octet in range(128)},
    "+": "%20",
}


def _simple_escape(match: re.Match[str]) -> str:
    return _SIMPLE_ESCAPES[match.group()]


def _encode_simple(raw: str) -> str:
    """The §3.6 form of the decoding of a _SIMPLE_COMPONENT (or a _SIMPLE_FORM, whose "&" and
    "=" it leaves alone): its escapes are already right, its other characters are replaced
    one by one. A substitution per character that changes; str.translate would cost a
    dictionary look-up per character of the string."""
    return _NEEDS_ENCODING.sub(_simple_escape, raw)


def percent_encode(value: str) -> str:
    """Encode ``value`` per RFC 5849 §3.6: UTF-8, then every octet outside ALPHA / DIGIT /
    ``-._~`` as ``%XX`` with upper-case hex."""
    if _UNRESERVED.fullmatch(value):
        return value
    return value.encode("utf-8").decode("latin-1").translate(_ENCODE_TABLE)


def encode_encoded(value: str) -> str:
    """§3.6 applied to a string made of unreserved characters, ``%``, ``&`` and ``=`` only
    (normalised parameters): just those three change, and str.replace is far cheaper than a
    second full encoding."""
    return value.replace("%", "%25").replace("&", "%26").replace("=", "%3D")


# §3.4.1.3.1 Parameter Sources -----------------------------------------------------------------


def _form_component(raw: str) -> str:
    """One name or value of a form-urlencoded string, decoded (W3C HTML 4.01 §17.13.4: ``+`` is
    a space, ``%XX`` an octet of UTF-8; invalid UTF-8 becomes U+FFFD as in every Python
    verifier), then encoded per §3.6 for the base string."""
    if _SIMPLE_COMPONENT.fullmatch(raw):
        return _encode_simple(raw)
    return percent_encode(unquote(raw.replace("+", " "), errors="replace"))


def encoded_pairs(raw: str, out: list[tuple[str, str]]) -> bool:
    """Append the §3.6-encoded (name, value) pairs of the form-urlencoded string ``raw``;
    return whether a name starting with ``oauth_`` was among them.

    Splits on ``&`` only (``;`` is data), skips empty fields, and reads a field without ``=``
    as a name with an empty value, the way the district's form decoder reads the same string.
    """
    encoded: str | None = None
    if "oauth_" not in raw:
        if _CANONICAL_FORM.fullmatch(raw):
            encoded = raw
        elif _SIMPLE_FORM.fullmatch(raw):
            encoded = _encode_simple(raw)  # leaves "&" and "=" alone
    if encoded is not None:
        # Every name and value is in its §3.6 form already: split, no decoding needed.
        for field in encoded.split("&"):
            if field:
                name, _, value = field.partition("=")
                out.append((name, value))
        return False
    oauth_named = False
    for field in raw.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if _SIMPLE_COMPONENT.fullmatch(name):
            encoded_name = _encode_simple(name)
        else:
            encoded_name = percent_encode(unquote(name.replace("+", " "), errors="replace"))
        # "oauth_" is unreserved, so the encoded name starts with it iff the decoded one does.
        if encoded_name.startswith("oauth_"):
            oauth_named = True
            _oauth_named_pair(encoded_name, value, out)
            continue
        out.append((encoded_name, _form_component(value)))
    return oauth_named


def _oauth_named_pair(encoded_name: str, value: str, out: list[tuple[str, str]]) -> None:
    """A query or body field whose name starts with ``oauth_``.

    RFC 5849 §3.4.1.3.1 excludes ``oauth_signature`` from the base string, and oauthlib's
    verifier percent-decodes the value of every ``oauth_*`` field once more after the form
    decoding; a district built on it computes its base string that way, so ours does too.
    (The gateway should not forward such fields at all: they are protocol parameters.)
    """
    if encoded_name == "oauth_signature":
        return
    decoded_value = unquote(unquote(value.replace("+", " "), errors="replace"))
    out.append((encoded_name, percent_encode(decoded_value)))


# §3.4.1.2 Base String URI ---------------------------------------------------------------------


def split_url(url: str) -> tuple[str, str, str]:
    """(``scheme://authority``, raw path, raw query) of an absolute URL, fragment dropped."""
    match = _ORIGIN.match(url)
    if match is None:
        raise ValueError("an absolute http(s) URL is needed to sign a request")
    rest = url[match.end() :]
    if "#" in rest:
        rest = rest.partition("#")[0]
    path, _, query = rest.partition("?")
    return match.group(), path, query


def base_origin(origin: str) -> str:
    """``scheme://host[:port]`` per §3.4.1.2: scheme and host in lower case, userinfo dropped,
    the port kept only when it is not the scheme's default, a space as ``%20``."""
    parts = urlsplit(origin)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("only http and https URLs can be signed")
    host = parts.hostname  # lower-cased, brackets and userinfo removed
    if not host:
        raise ValueError("the URL to sign has no host")
    port = parts.port  # raises ValueError when not a number in 0..65535
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        # The canonical text of an IP literal, as the district's own URL parser prints it.
        host = f"[{address}]" if address.version == 6 else str(address)
    if port is not None and port <= 0:
        raise ValueError("the URL to sign has an invalid port")
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}".replace(" ", "%20")
    return f"{scheme}://{host}:{port}".replace(" ", "%20")


def base_string_uri(url: str) -> str:
    """The base string URI of §3.4.1.2 for the absolute ``url`` (query and fragment dropped).

    The path is taken as it is on the wire: the district computes its side from the raw
    request target, so re-encoding the path here would only add ways to disagree. A space (never
    on a real wire) becomes ``%20``, as in the RFC's own example.
    """
    origin, path, _ = split_url(url)
    return _base_uri(origin, path)


def _base_uri(origin: str, path: str) -> str:
    return base_origin(origin) + _base_path(path).replace(" ", "%20")


# §3.4.1.3.2 Parameters Normalization and §3.4.1.1 String Construction ----------------------------


def normalize_parameters(params: Iterable[tuple[str, str]]) -> str:
    """§3.4.1.3.2: encode each decoded (name, value), sort by name then value (byte order of
    the encoded strings), join as ``name=value`` with ``&``."""
    encoded = sorted((percent_encode(name), percent_encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def signature_base_string(
    method: str,
    url: str,
    oauth_params: Iterable[tuple[str, str]],
    *,
    body: bytes | None = None,
    content_type: str | None = None,
) -> str:
    """The signature base string of §3.4.1.1 for a request to the absolute ``url``.

    ``oauth_params`` are the protocol parameters (decoded) that go into the Authorization
    header, ``oauth_signature`` excluded. The query is decoded from the raw ``url``, and the
    body is included under the rules of §3.4.1.3.1 (see ``proxy.forms.form_text``).
    """
    origin, path, query = split_url(url)
    pairs: list[tuple[str, str]] = [
        (percent_encode(name), percent_encode(value)) for name, value in oauth_params
    ]
    if query:
        encoded_pairs(query, pairs)
    form = form_text(body, content_type)
    if form:
        encoded_pairs(form, pairs)
    pairs.sort()
    normalized = "&".join(f"{name}={value}" for name, value in pairs)
    uri = _base_uri(origin, path)
    return f"{percent_encode(method.upper())}&{percent_encode(uri)}&{encode_encoded(normalized)}"


# §3.4.2 HMAC-SHA1 / HMAC-SHA256 --------------------------------------------------------------


class Hmac:
    """HMAC (RFC 2104) with the key's inner and outer pad states hashed once.

    ``hmac.new(key).copy()`` per request costs twice as much as two ``hashlib`` copies; the
    key is the connection's, so its pads are computed when the config loads.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, hash_name: str) -> None:
        block_size = hashlib.new(hash_name).block_size
        if len(key) > block_size:
            key = hashlib.new(hash_name, key).digest()
        key = key.ljust(block_size, b"\0")
        self._inner = hashlib.new(hash_name, bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.new(hash_name, bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def hmac_signature(
    base_string: str,
    client_secret: str,
    token_secret: str = "",
    signature_method: str = "HMAC-SHA256",
) -> str:
    """§3.4.2: base64 of HMAC(``enc(client_secret)&enc(token_secret)``, base string)."""
    hash_name = hashlib_name(signature_method)
    key = f"{percent_encode(client_secret)}&{percent_encode(token_secret)}".encode()
    digest = Hmac(key, hash_name).digest(base_string.encode())
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def hashlib_name(signature_method: str) -> str:
    try:
        return SIGNATURE_METHODS[signature_method]
    except KeyError:
        raise ValueError(
            f"unsupported OAuth1 signature method {signature_method!r}; "
            f"use one of {', '.join(SIGNATURE_METHODS)}"
        ) from None


def _base_path(path: str) -> str:
    """The path of the base string URI (§3.4.1.2): raw, ``/`` when empty.

    A ``;`` that ends the last segment is dropped: Python's URL parser reads it as an empty
    path parameter and loses it, so every Python verifier (oauthlib's included) signs the path
    without it. Only a degenerate path meets this; OneRoster paths never do.
    """
    if not path:
        return "/"
    if ";" in path and path.find(";", path.rfind("/")) == len(path) - 1:
        return path[:-1]
    return path


def encode_path(path: str) -> str:
    """§3.6 encoding of the raw path part of the base string URI (§3.4.1.2)."""
    path = _base_path(path)
    if _SIMPLE_PATH.fullmatch(path):
        return path.replace("%", "%25").replace("/", "%2F")
    return percent_encode(path.replace(" ", "%20"))
