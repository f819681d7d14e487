"""The OAuth1 reference our signer must agree with: oauthlib's own RFC 5849 §3.4 functions.

Nothing here imports ``proxy.signing``; each function computes what an oauthlib-based district
computes for the same request, so a test comparing the two cannot pass by sharing a bug.
"""

from __future__ import annotations

import urllib.parse

from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849 import signature as rfc5849

FORM = "application/x-www-form-urlencoded"


def oauth_params(
    key: str, signature_method: str, nonce: str, timestamp: str
) -> list[tuple[str, str]]:
    """The protocol parameters of a two-legged request, as oauthlib's Client sends them."""
    return [
        ("oauth_nonce", nonce),
        ("oauth_timestamp", timestamp),
        ("oauth_version", "1.0"),
        ("oauth_signature_method", signature_method),
        ("oauth_consumer_key", key),
    ]


def base_string(
    method: str,
    url: str,
    *,
    key: str,
    signature_method: str,
    nonce: str,
    timestamp: str,
    body: bytes | None = None,
    content_type: str | None = None,
    parse_query: bool = True,
) -> str:
    """oauthlib's signature base string for the request.

    The body is a parameter source only with a form Content-Type, as in oauthlib's server-side
    ``_create_request``. With ``parse_query=False`` the query is decoded by the standard library's
    form decoder (``parse_qsl``) instead of oauthlib's stricter ``urldecode``, for raw queries
    that oauthlib refuses to parse (stray ``%``).
    """
    query = urllib.parse.urlparse(url).query
    body_text = None
    if body is not None and content_type is not None and FORM in content_type:
        body_text = body.decode("utf-8")
    if parse_query:
        params = rfc5849.collect_parameters(uri_query=query, body=body_text)
    else:
        params = rfc5849.collect_parameters(
            uri_query="",
            body=urllib.parse.parse_qsl(query, keep_blank_values=True),
        )
        if body_text is not None:
            params += rfc5849.collect_parameters(body=body_text)
    params += oauth_params(key, signature_method, nonce, timestamp)
    normalized = rfc5849.normalize_parameters(params)
    uri = rfc5849.base_string_uri(url)
    return rfc5849.signature_base_string(method, uri, normalized)


def sign(base: str, secret: str, signature_method: str) -> str:
    """oauthlib's HMAC signature of ``base`` with the client secret and no token."""
    client = Client("unused", client_secret=secret)
    if signature_method == "HMAC-SHA256":
        return rfc5849.sign_hmac_sha256_with_client(base, client)
    if signature_method == "HMAC-SHA1":
        return rfc5849.sign_hmac_sha1_with_client(base, client)
    raise ValueError(signature_method)


def client_header(
    method: str,
    url: str,
    *,
    key: str,
    secret: str,
    signature_method: str,
    nonce: str,
    timestamp: str,
    body: bytes | None = None,
    content_type: str | None = None,
) -> str:
    """The whole Authorization header from oauthlib's ``Client.sign`` (which refuses a GET with
    a form body, so callers use it only where it applies)."""
    client = Client(
        key,
        client_secret=secret,
        signature_method=signature_method,
        nonce=nonce,
        timestamp=timestamp,
    )
    headers = {"Content-Type": content_type} if content_type else {}
    _, signed, _ = client.sign(
        url, method, body.decode("utf-8") if body is not None else None, headers
    )
    return str(signed["Authorization"])


def header_signature(header: str) -> str:
    """The decoded ``oauth_signature`` of an Authorization header."""
    params = dict(rfc5849.utils.parse_authorization_header(header))
    return urllib.parse.unquote(params["oauth_signature"])
