"""Two-legged OAuth 1.0a request signing for OneRoster 1.1 districts (RFC 5849 §3).

OneRoster 1.1 districts authenticate consumers with OAuth 1.0a and no token: the consumer key
and secret of the connection, HMAC-SHA256 (the OneRoster default) or HMAC-SHA1.
``OAuth1Signer`` builds the ``Authorization: OAuth ...`` header (§3.5.1) for one upstream
request from the steps of ``proxy.signing.rfc5849`` (§3.4-§3.6).

The signer is on the hot path of every request, so it does not go through oauthlib's
``Client.sign`` (100-190 µs a call here): everything that depends only on the connection (HMAC
key pads, encoded constant ``oauth_*`` parameters, the header's fixed middle) is computed once
in ``OAuth1Signer.__init__``, and a request costs one pass over its query, one sort and one
HMAC. The result agrees byte for byte with oauthlib's ``signature`` module, which
``tests/signing/test_oauth1_property.py`` checks over generated queries, bodies and secrets.

Everything is pure and deterministic once ``nonce`` and ``timestamp`` are given.
"""

from __future__ import annotations

import binascii
import os
import time
from bisect import bisect_left
from typing import Final

from proxy.forms import form_text
from proxy.signing.rfc5849 import (
    Hmac,
    base_origin,
    encode_encoded,
    encode_path,
    encoded_pairs,
    hashlib_name,
    percent_encode,
    split_url,
)

__all__ = ["OAuth1Signer"]

# The protocol parameters' block (see ``OAuth1Signer._base_string``) ends with the version.
_BLOCK_TAIL: Final = "%26oauth_version%3D1.0"


class OAuth1Signer:
    """Signs requests for one district connection: two-legged OAuth 1.0a, no token.

    Build it once per connection when the config loads; ``authorization`` is then cheap and
    safe to call from any task (it keeps no per-request state).
    """

    __slots__ = (
        "_base_origins",
        "_block_head",
        "_block_middle",
        "_constant_pairs",
        "_header_middle",
        "_hmac",
        "_method_prefixes",
        "signature_method",
    )

    def __init__(self, key: str, secret: str, signature_method: str = "HMAC-SHA256") -> None:
        hash_name = hashlib_name(signature_method)
        self.signature_method = signature_method
        # §3.4.2: the key is enc(client secret) "&" enc(token secret), and there is no token.
        self._hmac = Hmac(f"{percent_encode(secret)}&".encode(), hash_name)
        encoded_key = percent_encode(key)
        encoded_method = percent_encode(signature_method)
        self._constant_pairs: tuple[tuple[str, str], ...] = (
            ("oauth_consumer_key", encoded_key),
            ("oauth_signature_method", encoded_method),
            ("oauth_version", "1.0"),
        )
        # §3.5.1, in the parameter order oauthlib's Client writes, so headers compare equal.
        # SECURITY: every value is §3.6-encoded, so none can hold a quote, comma or line break.
        self._header_middle = (
            f'", oauth_version="1.0", oauth_signature_method="{encoded_method}", '
            f'oauth_consumer_key="{encoded_key}", oauth_signature="'
        )
        # The protocol parameters in sorted order (§3.4.1.3.2), twice encoded as they appear
        # in the base string (§3.4.1.1), around the nonce and the timestamp.
        self._block_head = f"oauth_consumer_key%3D{encode_encoded(encoded_key)}%26oauth_nonce%3D"
        self._block_middle = (
            f"%26oauth_signature_method%3D{encode_encoded(encoded_method)}%26oauth_timestamp%3D"
        )
        self._method_prefixes: dict[str, str] = {
            m: f"{m}&" for m in ("GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS")
        }
        # raw "scheme://authority" -> its base string URI prefix, already §3.6-encoded.
        self._base_origins: dict[str, str] = {}

    def __repr__(self) -> str:
        # SECURITY: never show the key material, not even in a traceback or a debug log.
        return f"OAuth1Signer(signature_method={self.signature_method!r})"

    def authorization(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        nonce: str | None = None,
        timestamp: str | None = None,
    ) -> str:
        """Return the value of the Authorization header (``OAuth oauth_nonce="...", ...``).

        ``url`` is the absolute upstream URL exactly as it will be sent on the wire (scheme,
        host, optional port, raw path, raw query, already percent-encoded as the vendor sent
        it). ``body`` and ``content_type`` are the request's own; a form-urlencoded body is
        signed on every method. ``nonce`` and ``timestamp`` default to a fresh random nonce and
        the current time. Raises ValueError for a URL that is not absolute http(s).
        """
        # 120 random bits, unique across workers, replicas and restarts without shared state,
        # in 30 hex digits: oauthlib-based districts accept 20-30 alphanumerics by default.
        encoded_nonce = os.urandom(15).hex() if nonce is None else percent_encode(nonce)
        encoded_timestamp = (
            str(int(time.time())) if timestamp is None else percent_encode(timestamp)
        )
        base = self._base_string(method, url, body, content_type, encoded_nonce, encoded_timestamp)
        signature = binascii.b2a_base64(self._hmac.digest(base.encode()), newline=False)
        # base64 uses "+", "/" and "=", which §3.5.1 encodes (§3.6).
        encoded_signature = (
            signature.decode("ascii").replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        )
        return (
            f'OAuth oauth_nonce="{encoded_nonce}", oauth_timestamp="{encoded_timestamp}'
            f'{self._header_middle}{encoded_signature}"'
        )

    def signature_base_string(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        nonce: str,
        timestamp: str,
    ) -> str:
        """The §3.4.1.1 base string ``authorization`` signs; for tests and troubleshooting."""
        return self._base_string(
            method, url, body, content_type, percent_encode(nonce), percent_encode(timestamp)
        )

    def _base_string(
        self,
        method: str,
        url: str,
        body: bytes | None,
        content_type: str | None,
        encoded_nonce: str,
        encoded_timestamp: str,
    ) -> str:
        origin, path, query = split_url(url)
        encoded_origin = self._base_origins.get(origin)
        if encoded_origin is None:
            encoded_origin = self._remember_origin(origin)

        pairs: list[tuple[str, str]] = []
        oauth_named = False
        if query:
            oauth_named = encoded_pairs(query, pairs)
        if body:
            form = form_text(body, content_type)
            if form:
                oauth_named = encoded_pairs(form, pairs) or oauth_named
        if oauth_named:
            # A request parameter named oauth_* may sort anywhere among the protocol
            # parameters: sort them all together (rare; the gateway should refuse these).
            pairs += self._constant_pairs
            pairs += (("oauth_nonce", encoded_nonce), ("oauth_timestamp", encoded_timestamp))
            pairs.sort()
            params = encode_encoded("&".join(map("=".join, pairs)))
        else:
            # Any other name sorts wholly before "oauth_" or wholly after every protocol
            # parameter name, so the protocol parameters form one block, prepared at __init__
            # already encoded for the base string, that goes between the sorted request
            # parameters. In §3.6 output only "%" changes when encoded again (§3.4.1.1).
            block = (
                f"{self._block_head}{encoded_nonce.replace('%', '%25')}{self._block_middle}"
                f"{encoded_timestamp.replace('%', '%25')}{_BLOCK_TAIL}"
            )
            if pairs:
                pairs.sort()
                fields = list(map("=".join, pairs))
                # "\0" marks the block's place; §3.6 output never holds it.
                fields.insert(bisect_left(pairs, ("oauth_",)), "\0")
                params = encode_encoded("&".join(fields)).replace("\0", block)
            else:
                params = block

        method_prefix = self._method_prefixes.get(method)
        if method_prefix is None:
            method_prefix = percent_encode(method.upper()) + "&"
        return f"{method_prefix}{encoded_origin}{encode_path(path)}&{params}"

    def _remember_origin(self, origin: str) -> str:
        encoded = percent_encode(base_origin(origin))
        # One connection talks to one district, so this holds an entry or two; the bound keeps
        # a caller that passes arbitrary URLs from growing it.
        if len(self._base_origins) < 8:
            self._base_origins[origin] = encoded
        return encoded
