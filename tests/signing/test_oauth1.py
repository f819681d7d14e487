"""OAuth1 signer: RFC 5849's own example values and each rule of the brief, against oauthlib."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest
from oauthlib.common import INVALID_HEX_PATTERN
from oauthlib.common import urlencoded as OAUTHLIB_QUERY_CHARS

from proxy.signing.oauth1 import OAuth1Signer
from proxy.signing.rfc5849 import (
    base_string_uri,
    hmac_signature,
    normalize_parameters,
    percent_encode,
    signature_base_string,
)
from tests.signing import oauthlib_reference as ref

NONCE = "7d8f3e4a"
TIMESTAMP = "137131201"
FORM = "application/x-www-form-urlencoded"

# RFC 5849 §3.4.1.1: the request and the signature base string exactly as the RFC prints them.
RFC_URL = "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b"
RFC_BODY = b"c2&a3=2+q"
RFC_OAUTH = [
    ("oauth_consumer_key", "9djdj82h48djs9d2"),
    ("oauth_token", "kkk9d7dh3k39sjv7"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_timestamp", "137131201"),
    ("oauth_nonce", "7d8f3e4a"),
]
RFC_BASE_STRING = (
    "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
    "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_"
    "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m"
    "ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk"
    "9d7dh3k39sjv7"
)
# §3.4.1.3.2: the normalized parameters of the same request.
RFC_NORMALIZED = (
    "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj"
    "dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1"
    "&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
)


def test_rfc5849_example_base_string() -> None:
    got = signature_base_string("POST", RFC_URL, RFC_OAUTH, body=RFC_BODY, content_type=FORM)
    assert got == RFC_BASE_STRING


def test_rfc5849_example_normalized_parameters() -> None:
    params = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("c2", ""),
        ("a3", "2 q"),
        *RFC_OAUTH,
    ]
    assert normalize_parameters(params) == RFC_NORMALIZED


def test_rfc5849_example_signature() -> None:
    # The RFC's client secret "j49sk3j29djd" and token secret "dh893hdasih9". The value the RFC
    # prints for this request ("bYT5...") does not reproduce from its own inputs; the HMAC-SHA1
    # of its base string, by the standard library and by oauthlib, is this one.
    got = hmac_signature(RFC_BASE_STRING, "j49sk3j29djd", "dh893hdasih9", "HMAC-SHA1")
    key = b"j49sk3j29djd&dh893hdasih9"
    expected = base64.b64encode(
        hmac.new(key, RFC_BASE_STRING.encode(), hashlib.sha1).digest()
    ).decode()
    assert got == expected == "r6/TJjbCOr97/+UU0NsvSne7s5g="


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # §3.4.1.2's own examples.
        ("http://EXAMPLE.COM:80/r%20v/X?id=123", "http://example.com/r%20v/X"),
        ("https://www.example.net:8080/?q=1", "https://www.example.net:8080/"),
        ("HTTPS://Example.COM:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com?x=1", "https://example.com/"),
        ("https://example.com/A%2fb/%7Ec#frag", "https://example.com/A%2fb/%7Ec"),
        ("https://user:pw@example.com/a", "https://example.com/a"),
        ("http://[::0001]:8080/a", "http://[::1]:8080/a"),
        ("http://127.0.0.1:80/a", "http://127.0.0.1/a"),
        # a ";" ending the last segment is an empty path parameter to Python's URL parser
        ("https://example.com/a;", "https://example.com/a"),
        ("https://example.com/a;/b", "https://example.com/a;/b"),
        ("https://example.com/a;b;", "https://example.com/a;b;"),
        ("https://example.com/a;b", "https://example.com/a;b"),
    ],
)
def test_base_string_uri(url: str, expected: str) -> None:
    assert base_string_uri(url) == expected
    from oauthlib.oauth1.rfc5849.signature import base_string_uri as oauthlib_uri

    assert oauthlib_uri(url) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abcXYZ019-._~", "abcXYZ019-._~"),
        (" ", "%20"),
        ("+", "%2B"),
        ("*'()!", "%2A%27%28%29%21"),
        ("=&%", "%3D%26%25"),
        ("Zoë", "Zo%C3%AB"),
        ("☃", "%E2%98%83"),
        ("\U0001f600", "%F0%9F%98%80"),
    ],
)
def test_percent_encode(value: str, expected: str) -> None:
    assert percent_encode(value) == expected


# The query forms of the brief, each signed as sent. Every case is compared with oauthlib's
# base string and signature, and the decoded parameters are checked in the base string.
TRICKY_QUERIES = {
    "filter": "filter=familyName%3D%27O%27Brien%27%20AND%20status%3D%27active%27",
    "raw quotes": "filter=familyName='O'Brien'",
    "plus is space": "q=a+b",
    "encoded plus": "q=a%2Bb",
    "lowercase escapes": "q=%2b%7e%2a%c3%ab",
    "lowercase control escapes": "q=%0a%1f",
    "encoded oauth name": "%6fauth_x=%2541&%6Fauth_signature=x",
    "oauth name with escapes": "oauth_x%27y+z=%2541&oauth_signature%27=1",
    "escaped unreserved": "a=%2D%2E%5F%7E%41%30%2d&%62=1",
    "raw non-ascii": "n=Zoë&q=é+x&☃=%E2%98%83",
    "tilde and star": "a=~&b=*&c=%7E&d=%2A",
    "empty value": "a=&b=1",
    "no equals": "a&b=1",
    "repeated": "sort=b&sort=a&sort=b&sort=",
    "empty fields": "&&a=1&&",
    "non-ascii": "filter=givenName%3D%27Zo%C3%AB%27",
    "semicolon is data": "a=1;b=2",
    "equals in value": "a=b=c",
    "invalid utf-8": "a=%FF%FE",
    "stray percent": "a=%zz&b=100%",
    "oauth-named": "oauth_extra=%2541&oauth_signature=forged",
    "reserved raw": "x=:@!$,;/?",
    "space escapes": "fields=sourcedId,givenName&q=%20%20",
}


@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1"])
@pytest.mark.parametrize("case", list(TRICKY_QUERIES))
def test_query_signed_as_sent(case: str, method: str) -> None:
    url = f"https://District.Example:8443/ims/oneroster/v1p1/users?{TRICKY_QUERIES[case]}"
    key, secret = "district-key", "s+/=~&é"
    signer = OAuth1Signer(key, secret, method)
    ours = signer.signature_base_string("GET", url, nonce=NONCE, timestamp=TIMESTAMP)
    # oauthlib's urldecode refuses a stray "%" and raw non-ASCII; the stdlib's parse_qsl,
    # the same form decoding without that check, is the reference there
    query = TRICKY_QUERIES[case]
    strict = set(query) <= OAUTHLIB_QUERY_CHARS and not INVALID_HEX_PATTERN.search(query)
    theirs = ref.base_string(
        "GET",
        url,
        key=key,
        signature_method=method,
        nonce=NONCE,
        timestamp=TIMESTAMP,
        parse_query=strict,
    )
    assert ours == theirs
    header = signer.authorization("GET", url, nonce=NONCE, timestamp=TIMESTAMP)
    assert ref.header_signature(header) == ref.sign(theirs, secret, method)
    if strict:
        assert header == ref.client_header(
            "GET",
            url,
            key=key,
            secret=secret,
            signature_method=method,
            nonce=NONCE,
            timestamp=TIMESTAMP,
        )


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        # what the district decodes, re-encoded once more inside the base string
        ("q=a+b", "q%3Da%2520b"),
        ("q=a%2Bb", "q%3Da%252Bb"),
        ("q=%2b", "q%3D%252B"),
        ("a=~", "a%3D~"),
        ("a=%7E", "a%3D~"),
        ("a=*", "a%3D%252A"),
        ("a=", "a%3D%26"),
        ("a", "a%3D%26"),
        ("n=Zo%C3%AB", "n%3DZo%25C3%25AB"),
        ("f='O'Brien'", "f%3D%2527O%2527Brien%2527"),
        ("a=%FF", "a%3D%25EF%25BF%25BD"),
        ("a=%zz", "a%3D%2525zz"),
        ("a=1;b=2", "a%3D1%253Bb%253D2"),
    ],
)
def test_query_decoding_in_base_string(query: str, fragment: str) -> None:
    signer = OAuth1Signer("k", "s")
    base = signer.signature_base_string(
        "GET", f"https://d.example/x?{query}", nonce=NONCE, timestamp=TIMESTAMP
    )
    assert fragment in base


def test_repeated_parameters_sorted_by_value() -> None:
    base = OAuth1Signer("k", "s").signature_base_string(
        "GET", "https://d.example/x?s=b&s=a&s=&t=1", nonce=NONCE, timestamp=TIMESTAMP
    )
    assert "s%3D%26s%3Da%26s%3Db%26t%3D1" in base


def test_oauth_signature_in_query_is_not_signed() -> None:
    signer = OAuth1Signer("k", "s")
    plain = signer.signature_base_string(
        "GET", "https://d.example/x?a=1", nonce=NONCE, timestamp=TIMESTAMP
    )
    forged = signer.signature_base_string(
        "GET", "https://d.example/x?a=1&oauth_signature=abc", nonce=NONCE, timestamp=TIMESTAMP
    )
    assert plain == forged


@pytest.mark.parametrize("http_method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1"])
def test_form_body_signed_on_every_method(http_method: str, method: str) -> None:
    url = "https://d.example/ims/oneroster/v1p1/users?limit=5"
    body = b"filter=status%3D%27active%27&x=a+b&y"
    signer = OAuth1Signer("key", "secret", method)
    with_body = signer.signature_base_string(
        http_method, url, body=body, content_type=FORM, nonce=NONCE, timestamp=TIMESTAMP
    )
    without = signer.signature_base_string(http_method, url, nonce=NONCE, timestamp=TIMESTAMP)
    assert with_body != without
    assert "x%3Da%2520b" in with_body and with_body.endswith("%26y%3D")
    theirs = ref.base_string(
        http_method,
        url,
        key="key",
        signature_method=method,
        nonce=NONCE,
        timestamp=TIMESTAMP,
        body=body,
        content_type=FORM,
    )
    assert with_body == theirs
    header = signer.authorization(
        http_method, url, body=body, content_type=FORM, nonce=NONCE, timestamp=TIMESTAMP
    )
    assert ref.header_signature(header) == ref.sign(theirs, "secret", method)
    if http_method not in ("GET", "HEAD"):  # Client.sign refuses a GET with a form body
        assert header == ref.client_header(
            http_method,
            url,
            key="key",
            secret="secret",
            signature_method=method,
            nonce=NONCE,
            timestamp=TIMESTAMP,
            body=body,
            content_type=FORM,
        )


@pytest.mark.parametrize(
    "content_type",
    [FORM, "application/x-www-form-urlencoded; charset=utf-8", "Application/X-WWW-Form-Urlencoded"],
)
def test_form_content_type_variants(content_type: str) -> None:
    signer = OAuth1Signer("k", "s")
    base = signer.signature_base_string(
        "PUT",
        "https://d.example/x",
        body=b"a=1",
        content_type=content_type,
        nonce=NONCE,
        timestamp=TIMESTAMP,
    )
    assert "a%3D1" in base


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"lineItem": {"sourcedId": "a=1"}}', "application/json"),
        (b"a=1", "application/json"),
        (b"a=1", None),
        (b"a=1", "multipart/form-data; boundary=x"),
        (b"a=1&b=\xc3\xa9", FORM),  # raw non-ASCII: not form-urlencoded (oauthlib skips it)
        (b"a=%zz", FORM),  # malformed escape: likewise
        (b"", FORM),
    ],
)
def test_body_not_signed(body: bytes, content_type: str | None) -> None:
    signer = OAuth1Signer("k", "s")
    url = "https://d.example/ims/oneroster/v1p1/classes/c1/lineItems/l1"
    with_body = signer.signature_base_string(
        "PUT", url, body=body, content_type=content_type, nonce=NONCE, timestamp=TIMESTAMP
    )
    assert with_body == signer.signature_base_string("PUT", url, nonce=NONCE, timestamp=TIMESTAMP)
    assert "oauth_body_hash" not in with_body


@pytest.mark.parametrize(
    "secret", ["a+b/c=d~e&f", "&", "==", "é ü ☃", "\U0001f600", "", "x" * 200, "%41%"]
)
@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1"])
def test_secrets(secret: str, method: str) -> None:
    url = "https://d.example/ims/oneroster/v1p1/users?limit=1"
    signer = OAuth1Signer("key+/=~&é", secret, method)
    header = signer.authorization("GET", url, nonce=NONCE, timestamp=TIMESTAMP)
    assert header == ref.client_header(
        "GET",
        url,
        key="key+/=~&é",
        secret=secret,
        signature_method=method,
        nonce=NONCE,
        timestamp=TIMESTAMP,
    )
    # and by the standard library, with the key of §3.4.2 written out
    base = signer.signature_base_string("GET", url, nonce=NONCE, timestamp=TIMESTAMP)
    digest = hashlib.sha256 if method == "HMAC-SHA256" else hashlib.sha1
    mac_key = (percent_encode(secret) + "&").encode()
    expected = base64.b64encode(hmac.new(mac_key, base.encode(), digest).digest()).decode()
    assert ref.header_signature(header) == expected


def test_header_shape() -> None:
    header = OAuth1Signer("key 1", "secret").authorization(
        "GET", "https://d.example/x", nonce="n", timestamp="1700000000"
    )
    assert header.startswith("OAuth ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', header))
    assert params.keys() == {
        "oauth_nonce",
        "oauth_timestamp",
        "oauth_version",
        "oauth_signature_method",
        "oauth_consumer_key",
        "oauth_signature",
    }
    assert params["oauth_version"] == "1.0"
    assert params["oauth_signature_method"] == "HMAC-SHA256"
    assert params["oauth_consumer_key"] == "key%201"
    assert params["oauth_timestamp"] == "1700000000"
    assert re.fullmatch(r"[A-Za-z0-9%]+", params["oauth_signature"])


def test_sha1_when_configured() -> None:
    header = OAuth1Signer("k", "s", "HMAC-SHA1").authorization("GET", "https://d.example/x")
    assert 'oauth_signature_method="HMAC-SHA1"' in header
    signature = base64.b64decode(ref.header_signature(header))
    assert len(signature) == 20


def test_fresh_nonce_and_timestamp() -> None:
    signer = OAuth1Signer("k", "s")
    nonces = set()
    for _ in range(1000):
        params = dict(
            re.findall(r'(\w+)="([^"]*)"', signer.authorization("GET", "https://d.example/x"))
        )
        nonces.add(params["oauth_nonce"])
        # oauthlib's default server-side check: 20-30 letters and digits
        assert re.fullmatch(r"[0-9a-f]{30}", params["oauth_nonce"])
        assert abs(int(params["oauth_timestamp"]) - time.time()) < 5
    assert len(nonces) == 1000


def test_long_hmac_key_is_hashed_first() -> None:
    # RFC 2104: a key longer than the hash's block is replaced by its digest.
    secret = "k" * 100
    for method, digest in (("HMAC-SHA256", hashlib.sha256), ("HMAC-SHA1", hashlib.sha1)):
        got = hmac_signature("text", secret, "", method)
        want = hmac.new((secret + "&").encode(), b"text", digest).digest()
        assert base64.b64decode(got) == want


@pytest.mark.parametrize(
    "url",
    ["/relative/path?a=1", "ftp://d.example/x", "https:///nohost", "https://d.example:99999/x"],
)
def test_unsignable_urls(url: str) -> None:
    with pytest.raises(ValueError):
        OAuth1Signer("k", "s").authorization("GET", url)


def test_unknown_signature_method() -> None:
    with pytest.raises(ValueError, match="HMAC-SHA256"):
        OAuth1Signer("k", "s", "PLAINTEXT")


def test_repr_hides_credentials() -> None:
    text = repr(OAuth1Signer("the-key", "the-secret"))
    assert "the-key" not in text and "the-secret" not in text


def test_same_signer_other_hosts() -> None:
    # The per-origin cache must never hand one district's base URI to another URL.
    signer = OAuth1Signer("k", "s")
    for url in ("https://a.example/x", "https://b.example/x", "https://a.example:444/x"):
        assert signer.signature_base_string(
            "GET", url, nonce=NONCE, timestamp=TIMESTAMP
        ) == ref.base_string(
            "GET", url, key="k", signature_method="HMAC-SHA256", nonce=NONCE, timestamp=TIMESTAMP
        )


def test_oauth_named_field_in_form_body() -> None:
    # An oauth_* name in the body sorts among the protocol parameters, as in the query.
    url = "https://d.example/x?z=1"
    body = b"oauth_extra=%2541&a=1&oauth_signature=forged"
    signer = OAuth1Signer("k", "s")
    ours = signer.signature_base_string(
        "POST", url, body=body, content_type=FORM, nonce=NONCE, timestamp=TIMESTAMP
    )
    assert ours == ref.base_string(
        "POST",
        url,
        key="k",
        signature_method="HMAC-SHA256",
        nonce=NONCE,
        timestamp=TIMESTAMP,
        body=body,
        content_type=FORM,
    )
    assert "oauth_extra%3DA%26oauth_nonce" in ours
