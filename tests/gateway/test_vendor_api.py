"""Vendor-facing endpoints beside the gateway, against the running proxy: ``POST /oauth/token``
(RFC 6749 §4.4 client credentials -> HS256 JWT) and ``GET /applications`` (docs/http-api.md).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import time
import warnings
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import jwt
import pytest

from tests.support import (
    ACME_CLIENT_SECRET,
    ACME_VENDOR_AUTH,
    ADMIN_TOKEN,
    JWT_KEY,
    assert_imsx,
    auth,
    base_config,
    raw_exchange,
)

# Characters that form-encoding changes (RFC 6749 §2.3.1 / Appendix B), and a colon.
ODD_SECRET = "s3cret+/=:&%20 ~é-0123456789abcdefghij"
KEY_B = "second-jwt-key-for-rotation-0123456789abcdef"
V1P2 = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
V1P1 = "https://purl.imsglobal.org/spec/or/v1p1/scope/"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def token_request(
    proxy: Any,
    http: aiohttp.ClientSession,
    form: dict[str, str] | str,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], Any]:
    body = (
        form
        if isinstance(form, str)
        else "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in form.items())
    )
    async with http.post(
        f"{proxy.url}/oauth/token",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
    ) as resp:
        return resp.status, await resp.json(), resp.headers


async def get_jwt(proxy: Any, http: aiohttp.ClientSession, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    status, data, _ = await token_request(proxy, http, form, basic("acme", ACME_CLIENT_SECRET))
    assert status == 200, data
    return str(data["access_token"])


async def status_of(http: aiohttp.ClientSession, url: str, token: str) -> int:
    async with http.get(url, headers=auth(token)) as resp:
        await resp.read()
        return resp.status


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": "oneroster-proxy",
        "aud": "oneroster-proxy",
        "sub": "acme",
        "iat": now,
        "exp": now + 600,
        "scope": "roster-core.readonly",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs512() -> str:
    """The right key with another HMAC algorithm: refused because the algorithm is pinned."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT's key-length advice for SHA-512
        return jwt.encode(claims(), JWT_KEY, algorithm="HS512")


@pytest.fixture
async def odd_proxy(sandbox, start_proxy, tmp_path):
    doc = base_config(tmp_path, sandbox)
    doc["vendors"]["acme"]["client_secret"] = ODD_SECRET
    return await start_proxy(sandbox, doc)


async def test_token_response_and_claims(proxy, http):
    status, data, headers = await token_request(
        proxy, http, {"grant_type": "client_credentials"}, basic("acme", ACME_CLIENT_SECRET)
    )
    assert status == 200, data
    assert headers["Cache-Control"] == "no-store"
    assert set(data) == {"access_token", "token_type", "expires_in", "scope"}
    assert data["token_type"] == "bearer"
    assert isinstance(data["expires_in"], int) and data["expires_in"] > 0
    token = data["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    got = jwt.decode(token, JWT_KEY, algorithms=["HS256"], audience="oneroster-proxy")
    assert got["sub"] == "acme" and got["iss"] and got["aud"]
    assert got["exp"] - got["iat"] == data["expires_in"]
    assert abs(got["iat"] - time.time()) < 5
    # No scope asked: every scope, in the response and the claim.
    assert (
        set(got["scope"].split())
        == set(data["scope"].split())
        == {
            "roster.readonly",
            "roster-core.readonly",
            "roster-demographics.readonly",
            "resource.readonly",
            "gradebook.readonly",
            "gradebook.createput",
            "gradebook.delete",
        }
    )
    # Accepted on the gateway like an opaque token, for its vendor's connections only.
    assert await status_of(http, proxy.app_url("v1p1/users?limit=1"), token) == 200
    assert await status_of(http, proxy.app_url("v1p1/users", app="app-8"), token) == 404


async def test_client_authentication_forms(odd_proxy, http):
    proxy = odd_proxy
    grant = {"grant_type": "client_credentials"}
    # Basic, as sent (what most clients do) and form-encoded first (what RFC 6749 §2.3.1 says).
    for headers in (
        basic("acme", ODD_SECRET),
        basic(quote_plus("acme"), quote_plus(ODD_SECRET)),
        basic("acme", quote(ODD_SECRET, safe="")),
    ):
        status, data, _ = await token_request(proxy, http, grant, headers)
        assert status == 200, (headers, data)
    # Form fields.
    status, data, _ = await token_request(
        proxy, http, {**grant, "client_id": "acme", "client_secret": ODD_SECRET}
    )
    assert status == 200, data

    # Wrong secret, unknown client, a vendor without client_secret, no credentials at all,
    # an empty secret, a near miss: all invalid_client, 401.
    for form, headers in (
        (grant, basic("acme", ODD_SECRET + "x")),
        (grant, basic("acme", ACME_CLIENT_SECRET)),
        (grant, basic("nobody", ODD_SECRET)),
        (grant, basic("other", "")),
        (grant, None),
        ({**grant, "client_id": "acme", "client_secret": ""}, None),
        ({**grant, "client_id": "acme"}, None),
        (grant, {"Authorization": "Basic !!!notbase64"}),
    ):
        status, data, resp_headers = await token_request(proxy, http, form, headers)
        assert status == 401, (form, headers, data)
        assert data["error"] == "invalid_client"
        assert resp_headers["Cache-Control"] == "no-store"
        assert "WWW-Authenticate" in resp_headers


async def test_grant_and_scope_errors(proxy, http):
    creds = basic("acme", ACME_CLIENT_SECRET)
    cases = [
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "gradebook.write"}, "invalid_scope"),
        (
            {
                "grant_type": "client_credentials",
                "scope": "roster.readonly https://example.com/scope/roster.readonly",
            },
            "invalid_scope",
        ),
        ({"grant_type": "client_credentials", "scope": V1P2 + "nonsense"}, "invalid_scope"),
    ]
    for form, error in cases:
        status, data, headers = await token_request(proxy, http, form, creds)
        assert status == 400, (form, data)
        assert data["error"] == error, (form, data)
        assert headers["Cache-Control"] == "no-store"


async def test_scope_narrows_the_jwt(proxy, http):
    core = await get_jwt(proxy, http, "roster-core.readonly")
    assert await status_of(http, proxy.app_url("v1p1/users?limit=1"), core) == 200
    assert await status_of(http, proxy.app_url("rostering/v1p2/schools"), core) == 200
    # The connection shares these, the JWT does not: 403.
    for path in (
        "v1p1/demographics",
        "gradebook/v1p2/lineItems",
        "v1p1/lineItems",
        "rostering/v1p2/classes/x/students",
        "resources/v1p2/resources",
    ):
        assert await status_of(http, proxy.app_url(path), core) == 403, path

    # Full scope URIs, 1.2 and 1.1 forms, space-separated.
    grade = await get_jwt(proxy, http, f"{V1P2}gradebook.readonly {V1P1}resource.readonly")
    payload = jwt.decode(grade, JWT_KEY, algorithms=["HS256"], audience="oneroster-proxy")
    assert set(payload["scope"].split()) == {"gradebook.readonly", "resource.readonly"}
    assert await status_of(http, proxy.app_url("gradebook/v1p2/lineItems?limit=1"), grade) == 200
    assert await status_of(http, proxy.app_url("resources/v1p2/resources?limit=1"), grade) == 200
    assert await status_of(http, proxy.app_url("v1p1/users"), grade) == 403

    # The other vendor's connection stays out of reach whatever the scope.
    assert await status_of(http, proxy.app_url("v1p1/users", app="app-8"), core) == 404


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: jwt.encode(
                claims(), "a-foreign-key-of-enough-length-0123456789", algorithm="HS256"
            ),
            id="foreign-key",
        ),
        pytest.param(lambda: jwt.encode(claims(), None, algorithm="none"), id="alg-none"),
        pytest.param(lambda: hs512(), id="alg-hs512"),
        pytest.param(
            lambda: jwt.encode(claims(exp=int(time.time()) - 5), JWT_KEY, algorithm="HS256"),
            id="expired",
        ),
        pytest.param(
            lambda: jwt.encode(claims(aud="someone-else"), JWT_KEY, algorithm="HS256"),
            id="wrong-aud",
        ),
        pytest.param(
            lambda: jwt.encode(claims(iss="someone-else"), JWT_KEY, algorithm="HS256"),
            id="wrong-iss",
        ),
        pytest.param(lambda: jwt.encode(claims(exp=None), JWT_KEY, algorithm="HS256"), id="no-exp"),
        pytest.param(
            lambda: jwt.encode(claims(sub="nobody"), JWT_KEY, algorithm="HS256"),
            id="unknown-vendor",
        ),
        pytest.param(
            lambda: jwt.encode(claims(sub="other"), JWT_KEY, algorithm="HS256"),
            id="vendor-without-client-secret",
        ),
    ],
)
async def test_bad_jwts_are_401(proxy, http, sandbox, make):
    # A well-formed control JWT made the same way passes, so each refusal is about its flaw.
    good = jwt.encode(claims(), JWT_KEY, algorithm="HS256")
    assert await status_of(http, proxy.app_url("v1p1/orgs"), good) == 200
    before = len(sandbox.recorded)
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(make())) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert_imsx(await resp.json())
    assert len(sandbox.recorded) == before


async def reload(proxy: Any, http: aiohttp.ClientSession, **server: Any) -> None:
    doc = copy.deepcopy(proxy.doc)
    doc["server"].update(server)
    proxy.write(doc)
    async with http.post(f"{proxy.admin_url}/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 200, await resp.text()


async def test_jwt_key_rotation(proxy, http):
    url = proxy.app_url("v1p1/orgs")
    old = await get_jwt(proxy, http)
    jwt.decode(old, JWT_KEY, algorithms=["HS256"], audience="oneroster-proxy")

    # Step 1: a new first key signs; the old key still verifies, so no vendor notices.
    await reload(proxy, http, jwt_keys=[KEY_B, JWT_KEY])
    new = await get_jwt(proxy, http)
    jwt.decode(new, KEY_B, algorithms=["HS256"], audience="oneroster-proxy")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(new, JWT_KEY, algorithms=["HS256"], audience="oneroster-proxy")
    assert await status_of(http, url, old) == 200
    assert await status_of(http, url, new) == 200

    # Step 2: the old key retired; its JWTs end, the new ones go on.
    await reload(proxy, http, jwt_keys=[KEY_B])
    assert await status_of(http, url, old) == 401
    assert await status_of(http, url, new) == 200


async def test_withdrawing_client_secret_ends_jwts(proxy, http):
    token = await get_jwt(proxy, http)
    url = proxy.app_url("v1p1/orgs")
    assert await status_of(http, url, token) == 200
    doc = copy.deepcopy(proxy.doc)
    del doc["vendors"]["acme"]["client_secret"]
    proxy.write(doc)
    async with http.post(f"{proxy.admin_url}/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 200, await resp.text()
    assert await status_of(http, url, token) == 401
    status, data, _ = await token_request(
        proxy, http, {"grant_type": "client_credentials"}, basic("acme", ACME_CLIENT_SECRET)
    )
    assert status == 401 and data["error"] == "invalid_client"
    # Opaque tokens of the vendor are unaffected.
    assert await status_of(http, url, await proxy.token()) == 200


# -- GET /applications -------------------------------------------------------------------------


@pytest.fixture
async def apps_proxy(sandbox, start_proxy, tmp_path):
    doc = base_config(tmp_path, sandbox)
    conns = doc["connections"]
    conns["app-9"] = dict(
        conns["app-7"],
        scopes=["roster.readonly", "gradebook.readonly"],
        expires=dt.date(2031, 6, 30),
        enabled=False,
    )
    conns["app-10"] = dict(conns["app-8"])
    doc["districts"]["shelbyville"] = dict(doc["districts"]["springfield"], versions=["1.2"])
    conns["app-11"] = dict(conns["app-7"], district="shelbyville", scopes=["roster.readonly"])
    return await start_proxy(sandbox, doc)


async def applications(proxy: Any, http: aiohttp.ClientSession, token: str) -> Any:
    async with http.get(f"{proxy.url}/applications", headers=auth(token)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        return await resp.json(), await resp.text()


async def test_applications_lists_the_vendors_connections(apps_proxy, sandbox, http):
    proxy = apps_proxy
    token = await proxy.token("acme")
    data, text = await applications(proxy, http, token)
    apps = {a["appId"]: a for a in data["applications"]}
    assert set(apps) == {"app-7", "app-9", "app-11"}
    for app in apps.values():
        assert {"appId", "district", "versions", "scopes", "enabled", "expires", "base_url"} <= set(
            app
        )
        assert app["base_url"] == f"{proxy.url}/{app['appId']}/ims/oneroster"
    assert apps["app-7"]["district"] == "springfield"
    assert apps["app-7"]["versions"] == ["1.1", "1.2"]
    assert apps["app-7"]["enabled"] is True and apps["app-7"]["expires"] is None
    assert len(apps["app-7"]["scopes"]) == 7
    assert apps["app-9"]["scopes"] == ["gradebook.readonly", "roster.readonly"]
    assert apps["app-9"]["enabled"] is False and apps["app-9"]["expires"] == "2031-06-30"
    assert apps["app-11"]["district"] == "shelbyville"
    assert apps["app-11"]["versions"] == ["1.2"]

    # Never a key or secret of any kind.
    for secret in (
        sandbox.key,
        sandbox.secret,
        ACME_CLIENT_SECRET,
        ACME_VENDOR_AUTH,
        JWT_KEY,
        ADMIN_TOKEN,
        token,
    ):
        assert secret not in text

    # A client appends v1p1/... or rostering/v1p2/... to base_url and gets data.
    for rest, key in (("v1p1/users?limit=2", "users"), ("rostering/v1p2/schools", "orgs")):
        async with http.get(f"{apps['app-7']['base_url']}/{rest}", headers=auth(token)) as resp:
            assert resp.status == 200, rest
            assert (await resp.json())[key]

    # The other vendor sees its own only.
    other, text = await applications(proxy, http, await proxy.token("other"))
    assert sorted(a["appId"] for a in other["applications"]) == ["app-10", "app-8"]
    assert "app-7" not in text and "app-9" not in text and "app-11" not in text


async def test_applications_auth_public_url_and_jwt_scopes(apps_proxy, http):
    proxy = apps_proxy
    async with http.get(f"{proxy.url}/applications") as resp:
        assert resp.status == 401
        assert_imsx(await resp.json())
    async with http.get(f"{proxy.url}/applications", headers=auth("orp_nonsense")) as resp:
        assert resp.status == 401

    # A JWT narrowed to one scope shows each connection's scopes narrowed the same way.
    token = await get_jwt(proxy, http, "roster.readonly")
    data, _ = await applications(proxy, http, token)
    scopes = {a["appId"]: a["scopes"] for a in data["applications"]}
    assert scopes == {
        "app-7": ["roster.readonly"],
        "app-9": ["roster.readonly"],
        "app-11": ["roster.readonly"],
    }

    # With public_url set, base_url is built on it, not on the Host the request used.
    await reload(proxy, http, public_url="https://proxy.example")
    data, _ = await applications(proxy, http, await proxy.token())
    assert {a["base_url"] for a in data["applications"]} == {
        f"https://proxy.example/{app}/ims/oneroster" for app in ("app-7", "app-9", "app-11")
    }


async def test_token_form_sent_in_pieces_is_read_whole(proxy):
    """A client (or a balancer in front) may deliver the form in several TCP segments;
    the token endpoint must read the whole body, not the first segment that arrived."""
    from tests.support import ACME_CLIENT_SECRET

    body = f"grant_type=client_credentials&client_id=acme&client_secret={ACME_CLIENT_SECRET}"
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.running.gateway_port)
    try:
        writer.write(
            (
                "POST /oauth/token HTTP/1.1\r\nHost: proxy.test\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body[:20].encode()
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(body[20:].encode())
        await writer.drain()
        data = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    assert b'"access_token"' in data


async def test_non_ascii_basic_credentials_are_invalid_client_not_500(proxy):
    """docs/http-api.md: no 500. Basic credentials that are not base64 (here: raw non-ASCII
    bytes) are an unknown client (401 invalid_client), like any other wrong credentials."""
    raw = await raw_exchange(
        proxy.running.gateway_port,
        b"POST /oauth/token HTTP/1.1\r\nHost: p\r\nAuthorization: Basic \xff\xfe\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 29\r\nConnection: close\r\n\r\ngrant_type=client_credentials",
    )
    assert raw.startswith(b"HTTP/1.1 401"), raw[:200]
    assert b'"invalid_client"' in raw
