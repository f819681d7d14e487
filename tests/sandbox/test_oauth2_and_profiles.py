"""OAuth2 client credentials, scope enforcement, and the profiles and switches that reproduce real
districts' behaviour (Infinite Campus, denied scopes, hidden students)."""

from __future__ import annotations

import base64
import re
import urllib.parse

import pytest

from proxy.sandbox import ALL_SCOPES
from tests.sandbox.conftest import call
from tests.support import assert_imsx

V12 = "https://purl.imsglobal.org/spec/or/v1p2/scope/"


async def _token(
    http, sbx, *, scope: str | None = None, basic: bool = True, secret: str | None = None
):
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    secret = sbx.secret if secret is None else secret
    if basic:
        pair = f"{urllib.parse.quote_plus(sbx.key)}:{urllib.parse.quote_plus(secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form |= {"client_id": sbx.key, "client_secret": secret}
    async with http.post(sbx.token_url, data=urllib.parse.urlencode(form), headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def _bearer(http, sbx, token: str, path: str, method: str = "GET", headers=None):
    return await call(http, sbx, path, method, signed=False,
                      headers={"Authorization": f"Bearer {token}", **(headers or {})})  # fmt: skip


@pytest.mark.parametrize("basic", [True, False], ids=["basic", "form"])
async def test_token_flow(make_sandbox, http, basic):
    sbx = await make_sandbox(auth="oauth2", secret="s+c/r=t~&ü")
    assert sbx.token_url == sbx.base_url + "/oauth2/token"
    status, payload, headers = await _token(http, sbx, basic=basic)
    assert status == 200, payload
    assert payload["token_type"] == "bearer" and payload["expires_in"] == 3600
    assert set(payload["scope"].split()) == {V12 + s for s in ALL_SCOPES}
    assert len(ALL_SCOPES) == 7
    assert headers["Cache-Control"] == "no-store"
    answer = await _bearer(
        http, sbx, payload["access_token"], "/ims/oneroster/rostering/v1p2/users?limit=1"
    )
    assert answer.status == 200 and sbx.recorded[-1].verified
    # OAuth1 signatures mean nothing to an OAuth2 district.
    assert (await call(http, sbx, "/ims/oneroster/v1p1/users")).status == 401


async def test_basic_credentials_sent_raw_also_work(make_sandbox, http):
    sbx = await make_sandbox(auth="oauth2", secret="abc+def/=")
    raw = base64.b64encode(f"{sbx.key}:{sbx.secret}".encode()).decode()
    async with http.post(sbx.token_url, data={"grant_type": "client_credentials"},
                         headers={"Authorization": f"Basic {raw}"}) as resp:  # fmt: skip
        assert resp.status == 200


async def test_token_errors(make_sandbox, http):
    sbx = await make_sandbox(auth="oauth2")
    status, payload, headers = await _token(http, sbx, secret="wrong")
    assert (status, payload["error"]) == (401, "invalid_client")
    assert headers["WWW-Authenticate"].startswith("Basic")
    status, payload, _ = await _token(http, sbx, scope="https://example.com/other")
    assert (status, payload["error"]) == (400, "invalid_scope")
    async with http.post(sbx.token_url, data={"grant_type": "password", "client_id": sbx.key,
                                              "client_secret": sbx.secret}) as resp:  # fmt: skip
        assert resp.status == 400 and (await resp.json())["error"] == "unsupported_grant_type"
    async with http.get(sbx.token_url) as resp:
        assert resp.status == 405


async def test_token_scope_is_enforced(make_sandbox, http):
    sbx = await make_sandbox(auth="oauth2")
    status, payload, _ = await _token(http, sbx, scope=V12 + "roster-core.readonly")
    assert status == 200 and payload["scope"] == V12 + "roster-core.readonly"
    token = payload["access_token"]
    assert (await _bearer(http, sbx, token, "/ims/oneroster/rostering/v1p2/classes")).status == 200
    for path in ("/ims/oneroster/rostering/v1p2/demographics",
                 "/ims/oneroster/gradebook/v1p2/lineItems",
                 "/ims/oneroster/resources/v1p2/resources"):  # fmt: skip
        answer = await _bearer(http, sbx, token, path)
        assert answer.status == 403, path
        assert_imsx(answer.json, "forbidden")
    cid = (await _bearer(http, sbx, token, "/ims/oneroster/rostering/v1p2/classes?limit=1")).json[
        "classes"
    ][0]["sourcedId"]
    # Relationships need roster.readonly, not roster-core.readonly (SPEC scope table).
    assert (
        await _bearer(http, sbx, token, f"/ims/oneroster/rostering/v1p2/classes/{cid}/students")
    ).status == 403
    # v1p1 scope URIs and short names are understood too.
    status, payload, _ = await _token(
        http,
        sbx,
        scope="https://purl.imsglobal.org/spec/or/v1p1/scope/gradebook.readonly roster.readonly",
    )
    assert status == 200
    assert "/v1p1/scope/gradebook.readonly" in payload["scope"]


async def test_expired_and_revoked_tokens_are_401(make_sandbox, http):
    sbx = await make_sandbox(auth="oauth2", token_ttl=60)
    _, payload, _ = await _token(http, sbx)
    token = payload["access_token"]
    path = "/ims/oneroster/v1p1/orgs"
    assert (await _bearer(http, sbx, token, path)).status == 200
    sbx.faults.expire_tokens_after = 0
    answer = await _bearer(http, sbx, token, path)
    assert answer.status == 401 and "invalid_token" in answer.headers["WWW-Authenticate"]
    assert_imsx(answer.json, "unauthorisedrequest")
    sbx.faults.expire_tokens_after = None
    assert (await _bearer(http, sbx, token, path)).status == 200
    sbx.revoke_all_tokens()
    assert (await _bearer(http, sbx, token, path)).status == 401
    assert (await _bearer(http, sbx, "made-up", path)).status == 401
    assert (await call(http, sbx, path, signed=False)).status == 401


@pytest.mark.slow  # waits out a real deadline or expiry
async def test_ttl_is_honoured(make_sandbox, http):
    import asyncio

    sbx = await make_sandbox(auth="oauth2", token_ttl=1)
    _, payload, _ = await _token(http, sbx)
    assert payload["expires_in"] == 1
    await asyncio.sleep(1.1)
    assert (
        await _bearer(http, sbx, payload["access_token"], "/ims/oneroster/v1p1/orgs")
    ).status == 401


# -- Infinite Campus --------------------------------------------------------------------------


async def test_infinite_campus_profile(make_sandbox, http):
    sbx = await make_sandbox(profile="infinite-campus", vendor_key="AwesomeLMS")
    assert sbx.base_url.endswith("/campus/api/oneroster/v1p2/springfield")
    assert re.fullmatch(r"InfiniteCampus_AwesomeLMS_[0-9a-f-]{36}", sbx.key)
    assert sbx.vendor_authorization == f"AwesomeLMS:{sbx.vendor_secret}"
    vendor = {"x-vendor-authorization": sbx.vendor_authorization}
    gradebook = [
        "/ims/oneroster/v1p1/lineItems",
        "/ims/oneroster/v1p1/results",
        "/ims/oneroster/v1p1/categories",
        "/ims/oneroster/gradebook/v1p2/scoreScales",
        "/ims/oneroster/gradebook/v1p2/assessmentResults",
    ]
    for path in gradebook:
        answer = await call(http, sbx, path)
        assert answer.status == 401, path
        assert_imsx(answer.json, "unauthorisedrequest")
        assert "x-vendor-authorization" in answer.json["imsx_description"]
        wrong = await call(http, sbx, path, headers={"x-vendor-authorization": "AwesomeLMS:nope"})
        assert wrong.status == 401
        assert (await call(http, sbx, path, headers=vendor)).status == 200, path
    assert (await call(http, sbx, "/ims/oneroster/v1p1/users")).status == 200
    # The API lives under the base path only.
    async with http.get(sbx.base_url.split("/campus")[0] + "/ims/oneroster/v1p1/users") as resp:
        assert resp.status == 404


async def test_infinite_campus_1p1_students_need_accounts(make_sandbox, http):
    sbx = await make_sandbox(profile="infinite-campus")
    v11 = int(
        (await call(http, sbx, "/ims/oneroster/v1p1/students?limit=1")).headers["X-Total-Count"]
    )
    v12 = int(
        (await call(http, sbx, "/ims/oneroster/rostering/v1p2/students?limit=1")).headers[
            "X-Total-Count"
        ]
    )
    assert 0 < v11 < v12 == 120
    plain = await make_sandbox()
    assert (
        int(
            (await call(http, plain, "/ims/oneroster/v1p1/students?limit=1")).headers[
                "X-Total-Count"
            ]
        )
        == 120
    )


async def test_deny_scopes(make_sandbox, http):
    sbx = await make_sandbox(deny_scopes=("roster-demographics.readonly", "gradebook.createput"))
    answer = await call(http, sbx, "/ims/oneroster/v1p1/demographics")
    assert answer.status == 403
    assert_imsx(answer.json, "forbidden")
    assert (await call(http, sbx, "/ims/oneroster/v1p1/users")).status == 200
    assert (await call(http, sbx, "/ims/oneroster/v1p1/lineItems")).status == 200
    put = await call(http, sbx, "/ims/oneroster/v1p1/lineItems/x", "PUT", body=b'{"lineItem":{}}',
                     headers={"Content-Type": "application/json"})  # fmt: skip
    assert put.status == 403
    assert (
        await call(http, sbx, "/ims/oneroster/v1p1/lineItems/x", "DELETE")
    ).status == 404  # allowed, absent


async def test_roster_core_only_refuses_relationships(make_sandbox, http):
    sbx = await make_sandbox(scopes=("roster-core.readonly",))
    classes = await call(http, sbx, "/ims/oneroster/v1p1/classes?limit=1")
    assert classes.status == 200
    cid = classes.json["classes"][0]["sourcedId"]
    assert (await call(http, sbx, f"/ims/oneroster/v1p1/classes/{cid}/students")).status == 403


async def test_hide_students(make_sandbox, http):
    sbx = await make_sandbox(hide_students=True)
    for path in ("/ims/oneroster/v1p1/students", "/ims/oneroster/rostering/v1p2/students",
                 "/ims/oneroster/v1p1/users?filter=role%3D%27student%27"):  # fmt: skip
        answer = await call(http, sbx, path)
        assert answer.status == 200
        assert answer.json["users"] == [] and answer.headers["X-Total-Count"] == "0", path
    cid = (await call(http, sbx, "/ims/oneroster/v1p1/classes?limit=1")).json["classes"][0][
        "sourcedId"
    ]
    assert (await call(http, sbx, f"/ims/oneroster/v1p1/classes/{cid}/students")).json[
        "users"
    ] == []
    assert (await call(http, sbx, f"/ims/oneroster/v1p1/classes/{cid}/teachers")).json[
        "users"
    ] != []
