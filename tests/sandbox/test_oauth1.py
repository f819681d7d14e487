"""OAuth 1.0a at the sandbox district (RFC 5849 §3), checked with oauthlib's client."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from oauthlib.oauth1 import (
    SIGNATURE_HMAC_SHA1,
    SIGNATURE_PLAINTEXT,
    SIGNATURE_TYPE_BODY,
    SIGNATURE_TYPE_QUERY,
    Client,
)
from oauthlib.oauth1.rfc5849 import signature, utils

from tests.sandbox.conftest import call, q
from tests.support import assert_imsx

USERS_11 = "/ims/oneroster/v1p1/users?limit=1"
USERS_12 = "/ims/oneroster/rostering/v1p2/users?limit=1"


@pytest.mark.parametrize("path", [USERS_11, USERS_12])
async def test_valid_hmac_sha256_signature_is_accepted(sbx, http, path):
    answer = await call(http, sbx, path)
    assert answer.status == 200, answer.body
    assert len(answer.json["users"]) == 1
    entry = sbx.recorded[-1]
    assert entry.verified and entry.status == 200
    assert 'oauth_signature_method="HMAC-SHA256"' in entry.header("Authorization")[0]


async def test_hmac_sha1_is_accepted(sbx, http):
    answer = await call(http, sbx, USERS_11, signature_method=SIGNATURE_HMAC_SHA1)
    assert answer.status == 200, answer.body


async def test_plaintext_is_refused(sbx, http):
    answer = await call(http, sbx, USERS_11, signature_method=SIGNATURE_PLAINTEXT)
    assert answer.status == 401
    assert_imsx(answer.json, "unauthorisedrequest")


@pytest.mark.parametrize(
    "change",
    [{"secret": "wrong-secret"}, {"key": "someone-else"}],
    ids=["wrong secret", "wrong key"],
)
async def test_wrong_credentials_are_401(sbx, http, change):
    answer = await call(http, sbx, USERS_11, **change)
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("OAuth")
    assert_imsx(answer.json, "unauthorisedrequest")
    assert not sbx.recorded[-1].verified


async def test_unsigned_request_is_401(sbx, http):
    answer = await call(http, sbx, USERS_11, signed=False)
    assert answer.status == 401
    assert_imsx(answer.json, "unauthorisedrequest")


async def test_replayed_nonce_is_401(sbx, http):
    stamp = str(int(time.time()))
    first = await call(http, sbx, USERS_11, nonce="fixed-nonce-123", timestamp=stamp)
    again = await call(http, sbx, USERS_11, nonce="fixed-nonce-123", timestamp=stamp)
    assert first.status == 200
    assert again.status == 401
    assert "replay" in again.json["imsx_description"]


@pytest.mark.parametrize("skew", [-301, -3600, 400])
async def test_timestamp_outside_window_is_401(sbx, http, skew):
    answer = await call(http, sbx, USERS_11, timestamp=str(int(time.time()) + skew))
    assert answer.status == 401
    assert_imsx(answer.json, "unauthorisedrequest")


async def test_timestamp_inside_window_is_accepted(sbx, http):
    answer = await call(http, sbx, USERS_11, timestamp=str(int(time.time()) - 250))
    assert answer.status == 200


async def test_parameters_in_query_are_accepted(sbx, http):
    answer = await call(http, sbx, USERS_11, signature_type=SIGNATURE_TYPE_QUERY)
    assert answer.status == 200, answer.body
    assert "oauth_signature=" in sbx.recorded[-1].path


async def test_parameters_in_form_body_are_accepted(sbx, http):
    # A POST is the only place oauthlib's client puts parameters in the body; the endpoint is
    # GET-only, so the signature verifies and the method is then refused.
    answer = await call(
        http, sbx, "/ims/oneroster/v1p1/users", "POST", body="x=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        signature_type=SIGNATURE_TYPE_BODY,
    )  # fmt: skip
    assert answer.status == 405
    assert sbx.recorded[-1].verified


@pytest.mark.parametrize(
    "query",
    [
        "filter=" + q("familyName='O'Brien'"),
        "filter=" + q("givenName='Zoë' AND status='active'"),
        "filter=email~'smith'&limit=5",
        "a=1&a=2&b=&c",
        "q=a+b&r=a%2Bb&s=%7E*",
        "x=%E2%9C%93&y=%22quoted%22&z=%26amp",
        "filter=familyName%3D%27Smith%27%20OR%20familyName%3D%27Jones%27",
    ],
)
async def test_tricky_queries_verify(sbx, http, query):
    answer = await call(http, sbx, "/ims/oneroster/v1p1/users?" + query)
    assert answer.status == 200, answer.body
    assert sbx.recorded[-1].path == "/ims/oneroster/v1p1/users?" + query


async def test_special_characters_in_key_and_secret(make_sandbox, http):
    sbx = await make_sandbox(key="k+y/=~&ü", secret="s+c/r=t~&ü%20")
    answer = await call(http, sbx, USERS_11)
    assert answer.status == 200, answer.body
    assert (await call(http, sbx, USERS_11, secret="s+c/r=t~&ü")).status == 401


def _get_with_body_authorization(sbx, url: str, body: str, *, include_body: bool) -> str:
    """Sign a GET whose form body is in the base string (RFC 5849 §3.4.1.3.1) with oauthlib's
    signature primitives; oauthlib's ``Client.sign`` refuses bodies on GET."""
    params = [
        ("oauth_consumer_key", sbx.key),
        ("oauth_nonce", f"n{time.time_ns()}"),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_timestamp", str(int(time.time()))),
        ("oauth_version", "1.0"),
    ]
    collected = signature.collect_parameters(
        uri_query=urllib.parse.urlsplit(url).query, body=body if include_body else ""
    )
    base = signature.signature_base_string(
        "GET", signature.base_string_uri(url), signature.normalize_parameters(collected + params)
    )
    sig = signature.sign_hmac_sha256_with_client(base, Client(sbx.key, client_secret=sbx.secret))
    return "OAuth " + ", ".join(
        f'{k}="{utils.escape(v)}"' for k, v in [*params, ("oauth_signature", sig)]
    )


async def test_form_body_on_get_is_part_of_the_signature(sbx, http):
    url = sbx.base_url + USERS_11
    body = "filter=status%3D%27active%27&x=a+b"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with_body = _get_with_body_authorization(sbx, url, body, include_body=True)
    answer = await call(
        http, sbx, USERS_11, body=body, signed=False, headers={**form, "Authorization": with_body}
    )
    assert answer.status == 200, answer.body
    assert sbx.recorded[-1].body == body.encode()
    # Signed without the body but sent with it: the district must notice.
    without = _get_with_body_authorization(sbx, url, body, include_body=False)
    answer = await call(
        http, sbx, USERS_11, body=body, signed=False, headers={**form, "Authorization": without}
    )
    assert answer.status == 401


async def test_request_uri_is_the_raw_target(sbx, http):
    """Signing a differently encoded but equivalent path must fail: the path is signed as sent."""
    url = sbx.base_url + "/ims/oneroster/v1p1/users"
    from tests.sandbox.conftest import sign

    _, headers, _ = sign(sbx, "GET", url.replace("/users", "/%75sers"))
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 401
