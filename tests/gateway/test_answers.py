"""Answers vendors and operators met in their first week, against the real proxy and the
sandbox district (docs/http-api.md):

* ``POST /oauth/token`` with a body that is not a form: 400 ``invalid_request``, whatever the
  credentials; a district token endpoint that does not answer within ``upstream_timeout``: 504;
* a narrowed JWT's 403 blames the token's scope, not the connection;
* the district token URL (with its port) is named to the operator (``check``, the log line),
  never to the vendor, who reads "the district's token endpoint failed";
* a refused token's access line names its token id (and vendor and app where known);
* ``HEAD`` works wherever ``GET`` does, with the same scope, and reaches the district as HEAD.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import jwt as pyjwt
import pytest
from aiohttp import web

from proxy.sandbox import RECORDED
from tests.cli.test_tokens import run_cli
from tests.gateway.test_vendor_api import basic, claims, get_jwt
from tests.serve.test_server import ProxyProcess, issue_token
from tests.support import (
    ACME_CLIENT_SECRET,
    ADMIN_TOKEN,
    JWT_KEY,
    assert_imsx,
    auth,
    base_config,
    free_port,
    serve_on_loopback,
)


@pytest.fixture
async def stalled_token_endpoint() -> AsyncIterator[str]:
    """A token endpoint that accepts the request and never answers (a hung district IdP)."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"error": "too late"}, status=500)

    app = web.Application()
    app.router.add_post("/oauth2/token", hang)
    runner, port = await serve_on_loopback(app)
    yield f"http://127.0.0.1:{port}/oauth2/token"
    release.set()
    await runner.cleanup()


def oauth2_doc(proxy_doc: dict[str, Any], token_url: str, **server: Any) -> dict[str, Any]:
    doc = copy.deepcopy(proxy_doc)
    doc["server"].update(server)
    doc["districts"]["springfield"]["auth"] = "oauth2"
    doc["districts"]["springfield"]["token_url"] = token_url
    return doc


async def test_token_request_that_is_not_a_form_is_invalid_request(proxy, http):
    url = f"{proxy.url}/oauth/token"
    good = basic("acme", ACME_CLIENT_SECRET)
    body = json.dumps({"grant_type": "client_credentials"}).encode()
    for headers in (
        {**good, "Content-Type": "application/json"},
        {"Content-Type": "application/json"},  # credentials inside the JSON
        {**good, "Content-Type": "text/plain"},
        good,  # a body without any Content-Type
    ):
        data = body
        if "Authorization" not in headers:
            data = json.dumps(
                {
                    "grant_type": "client_credentials",
                    "client_id": "acme",
                    "client_secret": ACME_CLIENT_SECRET,
                }
            ).encode()
        async with http.post(url, data=data, headers=headers) as resp:
            assert resp.status == 400, headers
            got = await resp.json()
            assert got["error"] == "invalid_request", got
            assert resp.headers["Cache-Control"] == "no-store"
    # The form with charset parameters still works.
    async with http.post(
        url,
        data=b"grant_type=client_credentials",
        headers={**good, "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    ) as resp:
        assert resp.status == 200, await resp.text()


async def test_a_token_endpoint_that_never_answers_is_504_without_its_url(
    sandbox, start_proxy, tmp_path, http, stalled_token_endpoint
):
    doc = oauth2_doc(base_config(tmp_path, sandbox), stalled_token_endpoint, upstream_timeout="1s")
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(token)) as resp:
        assert resp.status == 504
        data = await resp.json()
    assert_imsx(data)
    port = stalled_token_endpoint.rsplit(":", 1)[1].split("/")[0]
    assert data["imsx_description"] == "the district's token endpoint failed"
    assert port not in json.dumps(data)
    async with http.get(f"{proxy.admin_url}/metrics") as resp:
        metrics = await resp.text()
    assert 'upstream_errors_total{district="springfield",kind="token"} 1.0' in metrics


async def test_error_texts_keep_the_token_url_port(sandbox, start_proxy, tmp_path, http):
    closed = f"http://127.0.0.1:{free_port()}/oauth2/token"  # nothing listens there
    doc = oauth2_doc(base_config(tmp_path, sandbox), closed)
    proxy = await start_proxy(sandbox, doc)
    async with http.get(proxy.app_url("v1p1/orgs"), headers=auth(await proxy.token())) as resp:
        assert resp.status == 502
        description = (await resp.json())["imsx_description"]
    assert description == "the district's token endpoint failed", description

    code, out, err = await run_cli("check", "app-7", "--config", str(proxy.config_path), "--json")
    assert code == 1, err
    report = json.loads(out)
    items = {item["name"]: item for item in report["checks"]}
    assert items["token_endpoint"]["status"] == "fail"
    assert closed in items["token_endpoint"]["detail"], items["token_endpoint"]


async def test_a_narrowed_jwt_403_blames_the_tokens_scope(proxy, http):
    narrowed = await get_jwt(proxy, http, scope="roster-core.readonly")
    async with http.get(proxy.app_url("gradebook/v1p2/lineItems"), headers=auth(narrowed)) as r:
        assert r.status == 403
        text = (await r.json())["imsx_description"]
    assert "gradebook.readonly" in text and "token's scope" in text
    assert "connection does not share" not in text
    # The connection really does not share it: then the connection is named.
    other = await proxy.token("other")
    async with http.get(
        proxy.app_url("gradebook/v1p2/lineItems", app="app-8"), headers=auth(other)
    ) as r:
        assert r.status == 403
        text = (await r.json())["imsx_description"]
    assert "connection does not share" in text and "token" not in text


async def test_head_is_allowed_wherever_get_is_and_forwarded_as_head(proxy, http, sandbox):
    token = await proxy.token()
    url = proxy.app_url("v1p1/users?limit=2")
    async with http.get(url, headers=auth(token)) as resp:
        assert resp.status == 200
        get_total = resp.headers["X-Total-Count"]
        get_body = await resp.read()
    before = len(sandbox.app[RECORDED])
    async with http.head(url, headers=auth(token)) as resp:
        assert resp.status == 200
        assert resp.headers["X-Total-Count"] == get_total
        assert "Link" in resp.headers
        # What GET would carry, or none (RFC 9110 §9.3.2): with rewrite_hrefs (the default)
        # the GET's length is that of the rewritten body, unknown without reading it.
        assert resp.headers.get("Content-Length") in (None, str(len(get_body)))
        assert await resp.read() == b""
    sent = sandbox.app[RECORDED][before:]
    assert [rec.method for rec in sent] == ["HEAD"]
    # The same scope as GET: app-8 shares roster-core only, so a relationship is refused.
    other = await proxy.token("other")
    async with http.head(
        proxy.app_url("v1p1/users?limit=1", app="app-8"), headers=auth(other)
    ) as r:
        assert r.status == 200
    before = len(sandbox.app[RECORDED])
    async with http.head(
        proxy.app_url("v1p1/schools/x/classes", app="app-8"), headers=auth(other)
    ) as r:
        assert r.status == 403
    assert len(sandbox.app[RECORDED]) == before


async def test_a_refused_tokens_access_line_names_it(sandbox, tmp_path, http):
    proc = await ProxyProcess(tmp_path, base_config(tmp_path, sandbox)).start()
    try:
        opaque = await issue_token(proc, http)
        opaque_id = opaque.split("_")[1]
        async with http.delete(
            f"{proc.admin_url}/admin/tokens/{opaque_id}", headers=auth(ADMIN_TOKEN)
        ) as resp:
            assert resp.status == 200
        expired = pyjwt.encode(
            claims(exp=1_000_000_000, iat=999_999_000, jti="expiredjwt01"), JWT_KEY
        )
        unknown = "orp_unknownid123_" + "A" * 43
        for token, path in (
            (opaque, "/app-7/ims/oneroster/v1p1/orgs"),
            (expired, "/app-7/ims/oneroster/v1p1/users"),
            (unknown, "/app-7/ims/oneroster/v1p1/schools"),
        ):
            async with http.get(proc.url + path, headers=auth(token)) as resp:
                assert resp.status == 401
        lines = {}
        for path in ("v1p1/orgs", "v1p1/users", "v1p1/schools"):
            line = await proc.wait_for_log(f'"path": "/app-7/ims/oneroster/{path}"')
            lines[path] = json.loads(line)
        revoked = lines["v1p1/orgs"]
        assert (revoked["token_id"], revoked["vendor"], revoked["app"]) == (
            opaque_id,
            "acme",
            "app-7",
        )
        assert revoked["status"] == 401 and "revoked" in revoked["error"]
        old_jwt = lines["v1p1/users"]
        assert (old_jwt["token_id"], old_jwt["vendor"]) == ("expiredjwt01", "acme")
        stranger = lines["v1p1/schools"]
        assert stranger["token_id"] == "unknownid123" and stranger["vendor"] == "-"
        assert stranger["app"] == "-"  # an unknown token's app is not its to claim
        # GET /applications names a refused token the same way.
        async with http.get(f"{proc.url}/applications", headers=auth(opaque)) as resp:
            assert resp.status == 401
        apps = json.loads(await proc.wait_for_log('"path": "/applications"'))
        assert (apps["token_id"], apps["vendor"]) == (opaque_id, "acme")
        assert opaque not in proc.text() and expired not in proc.text()
    finally:
        await proc.stop()


ORIGIN = "OneRoster-Proxy-Origin"


async def test_every_answer_says_whether_the_district_or_the_proxy_made_it(
    sandbox, start_proxy, tmp_path, http
):
    # docs/http-api.md "Who made an answer": a district's 401 (its OAuth signature refused)
    # must not read like the proxy refusing the vendor's own token.
    doc = base_config(tmp_path, sandbox)
    doc["connections"]["app-9"] = {**doc["connections"]["app-8"], "secret": "not-the-secret"}
    doc["districts"]["down"] = {"base_url": f"http://127.0.0.1:{free_port()}/x"}
    doc["connections"]["app-down"] = {**doc["connections"]["app-8"], "district": "down"}
    proxy = await start_proxy(sandbox, doc)
    acme, other = await proxy.token("acme"), await proxy.token("other")

    async def origin(method: str, url: str, **kw: Any) -> tuple[int, str]:
        async with http.request(method, url, **kw) as resp:
            await resp.read()
            return resp.status, resp.headers.get(ORIGIN, "")

    district = [
        ("GET", proxy.app_url("v1p1/orgs"), auth(acme), 200),
        ("GET", proxy.app_url("v1p1/users?limit=1000"), auth(acme), 200),  # streamed
        ("HEAD", proxy.app_url("v1p1/users"), auth(acme), 200),
        ("GET", proxy.app_url("v1p1/users/no-such-user"), auth(acme), 404),
        ("GET", proxy.app_url("v1p1/orgs", "app-9"), auth(other), 401),
    ]
    own = [
        ("GET", proxy.app_url("v1p1/orgs"), auth("orp_nosuchtoken0_" + "x" * 43), 401),
        ("GET", proxy.app_url("v1p1/orgs"), {}, 401),
        ("GET", proxy.app_url("v1p1/schools/x/classes", "app-8"), auth(other), 403),
        ("GET", proxy.app_url("v1p1/orgs", "app-nope"), auth(acme), 404),
        ("GET", proxy.app_url("v1p1/orgs", "app-down"), auth(other), 502),
        ("GET", proxy.url + "/not/oneroster", auth(acme), 400),
        ("GET", proxy.url + "/applications", auth(acme), 200),
        ("GET", proxy.url + "/applications", {}, 401),
        ("POST", proxy.url + "/oauth/token", basic("acme", "wrong"), 400),
        ("GET", proxy.url + "/intake/no-such-link", {}, 404),
        ("GET", proxy.admin_url + "/healthz", {}, 200),
        ("GET", proxy.admin_url + "/admin/connections", auth(ADMIN_TOKEN), 200),
        ("GET", proxy.admin_url + "/admin/connections", {}, 401),
    ]
    for expected, cases in (("district", district), ("proxy", own)):
        for method, url, headers, status in cases:
            assert await origin(method, url, headers=headers) == (status, expected), url
    form = {"grant_type": "client_credentials"}
    token_answer = await origin(
        "POST", proxy.url + "/oauth/token", data=form,
        headers=basic("acme", ACME_CLIENT_SECRET),
    )  # fmt: skip
    assert token_answer == (200, "proxy")


async def test_a_version_the_district_does_not_serve_is_404_before_any_upstream_request(
    sandbox, start_proxy, tmp_path, http
):
    doc = base_config(tmp_path, sandbox)
    doc["districts"]["springfield"]["versions"] = ["1.2"]
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    before = len(sandbox.app[RECORDED])
    for path in ("v1p1/users", "v1p1/classes/x/lineItems", "v1p1/no-such-thing"):
        async with http.get(proxy.app_url(path), headers=auth(token)) as resp:
            assert resp.status == 404, path
            assert resp.headers[ORIGIN] == "proxy"
            data = await resp.json()
        assert_imsx(data)
        assert (
            "1.1" in data["imsx_description"] and "serves OneRoster 1.2" in data["imsx_description"]
        )
    assert len(sandbox.app[RECORDED]) == before  # nothing reached the district
    async with http.get(proxy.app_url("rostering/v1p2/users"), headers=auth(token)) as resp:
        assert resp.status == 200
    # A district serving 1.1 only refuses 1.2 paths the same way.
    doc["districts"]["springfield"]["versions"] = ["1.1"]
    proxy.write(doc)
    async with http.post(proxy.admin_url + "/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 200
    async with http.get(proxy.app_url("rostering/v1p2/users"), headers=auth(token)) as resp:
        assert resp.status == 404
        assert (
            "serves OneRoster 1.1 (/ims/oneroster/v1p1/...)"
            in (await resp.json())["imsx_description"]
        )
