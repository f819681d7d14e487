"""``proxy.forms``: the one answer to "is this a form body" and "what name does this field
decode to" (docs/http-api.md, refused parameters), read by the gateway's refusals, the OAuth1
signer and ``POST /oauth/token`` alike."""

from __future__ import annotations

import pytest

from proxy.forms import decoded_name, form_text, is_form, reserved_name


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/x-www-form-urlencoded", True),
        ("Application/X-WWW-Form-Urlencoded ; charset=utf-8", True),
        ("application/json", False),
        ("multipart/form-data; boundary=x", False),
        (None, False),
        ("", False),
    ],
)
def test_what_a_form_body_is(content_type: str | None, expected: bool) -> None:
    assert is_form(content_type) is expected


def test_form_text_is_a_well_formed_ascii_form_only() -> None:
    ctype = "application/x-www-form-urlencoded"
    assert form_text(b"a=1&b=%20", ctype) == "a=1&b=%20"
    assert form_text(b"a=1", "application/json") is None
    assert form_text("é=1".encode(), ctype) is None  # not ASCII: not signed
    assert form_text(b"a=%zz", ctype) is None  # a malformed escape
    assert form_text(b"", ctype) is None


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("%6Fauth_token", "oauth_token"),
        ("%256Fauth_token", "oauth_token"),  # a district that decodes once more
        ("+OAuth.Token", "oauth_token"),  # "+" a space, trimmed, folded, "." as "_"
        ("%5Fmethod", "_method"),
        ("familyName", "familyname"),
    ],
)
def test_decoded_names(raw: str, name: str) -> None:
    assert decoded_name(raw) == name


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        ("limit=100", None),
        ("filter=familyName%3D%27oauth_x%27&limit=1", None),  # a value, not a name
        ("filter=givenName%3D%27Zo%C3%AB%27", None),
        ("method=x&methods=y", None),
        ("limit=1&o%61uth_nonce=1", "oauth_nonce"),
        ("limit=1;oauth_token=x", "oauth_token"),
        ("_method=DELETE", "_method"),
        ("a=1&%5F%6D%65%74%68%6F%64=PUT", "_method"),
    ],
)
def test_reserved_names(raw: str, found: str | None) -> None:
    assert reserved_name(raw) == found
