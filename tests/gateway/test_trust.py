"""Trust at the gateway's edge (docs/http-api.md, refused parameters and headers; THREAT_MODEL.md
"The districts" and "Vendor isolation"): each attack sent as a vendor would send it, to a real
proxy in front of a real sandbox district, asserting what the district received (the sandbox
records every request) and what the vendor saw."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.gateway.test_vendor_api import basic, get_jwt, status_of, token_request
from tests.support import (
    ACME_CLIENT_SECRET,
    ADMIN_TOKEN,
    assert_imsx,
    auth,
    base_config,
    raw_exchange,
)

FORM = "application/x-www-form-urlencoded"


def recorded(sandbox: Any) -> list[Any]:
    from proxy.sandbox import RECORDED

    return list(sandbox.app[RECORDED])


async def circuit_of(http: aiohttp.ClientSession, proxy: Any, app: str) -> str:
    async with http.get(
        f"{proxy.admin_url}/admin/connections/{app}", headers=auth(ADMIN_TOKEN)
    ) as resp:
        return str((await resp.json())["circuit"])


# -- 1. One vendor cannot pause a shared district ------------------------------------------------


async def test_request_heads_are_capped_in_total(proxy, sandbox, http):
    """Eight lines of 16,000 bytes each pass the per-line limit (16 KB) but not the 64 KB cap:
    431 imsx, and the district never sees the request."""
    token = await proxy.token()
    padding = {f"X-Pad-{i}": "a" * 16_000 for i in range(8)}
    async with http.get(proxy.app_url("v1p1/orgs"), headers={**auth(token), **padding}) as resp:
        assert resp.status == 431
        assert_imsx(await resp.json())
    assert recorded(sandbox) == []
    # Just under the cap, the request goes through.
    padding = {f"X-Pad-{i}": "a" * 7_000 for i in range(8)}
    async with http.get(proxy.app_url("v1p1/orgs"), headers={**auth(token), **padding}) as resp:
        assert resp.status == 200
    assert len(recorded(sandbox)) == 1


async def test_large_heads_are_caught_pipelined_or_in_pieces(proxy, sandbox, http):
    """The cap holds however the bytes arrive: behind a small request in the same packet, or
    trickled in pieces."""
    token = await proxy.token()
    port = int(proxy.url.rsplit(":", 1)[1])
    line = b"GET /app-7/ims/oneroster/v1p1/orgs HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer "
    small = line + token.encode() + b"\r\n\r\n"
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 15_000) for i in range(6))
    big = line + token.encode() + b"\r\n" + pad + b"Connection: close\r\n\r\n"
    answer = await raw_exchange(port, small + big)
    statuses = [part.split(b" ", 2)[1] for part in answer.split(b"HTTP/1.")[1:]]
    assert statuses == [b"200", b"431"], answer[:300]

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for start in range(0, len(big), 4096):
            writer.write(big[start : start + 4096])
            await writer.drain()
            await asyncio.sleep(0)
        head = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert head.split(b" ", 2)[1] == b"431"
    assert len(recorded(sandbox)) == 1  # the small one only


async def test_a_vendor_the_district_closes_on_does_not_pause_it_for_others(proxy, sandbox, http):
    """Vendor acme sends heads the district resets the connection on (each GET tried three
    times); the shared district's circuit stays closed and vendor other is served."""
    sandbox.faults.reset_heads_over = 32 * 1024
    acme, other = await proxy.token("acme"), await proxy.token("other")
    padding = {f"X-Pad-{i}": "a" * 7_000 for i in range(6)}  # 42 KB: under the proxy's cap
    for _ in range(4):
        async with http.get(proxy.app_url("v1p1/orgs"), headers={**auth(acme), **padding}) as resp:
            assert resp.status == 502
            assert_imsx(await resp.json())
    assert len(recorded(sandbox)) >= 4, "the district received (and closed on) each of them"
    assert await circuit_of(http, proxy, "app-7") == "closed"
    seen = len(recorded(sandbox))
    async with http.get(proxy.app_url("v1p1/orgs", app="app-8"), headers=auth(other)) as resp:
        assert resp.status == 200
    assert len(recorded(sandbox)) == seen + 1


async def test_district_4xx_answers_do_not_open_the_circuit(proxy, sandbox, http):
    token = await proxy.token()
    for _ in range(7):
        async with http.get(proxy.app_url("v1p1/users/no-such-user"), headers=auth(token)) as resp:
            assert resp.status == 404
    assert await circuit_of(http, proxy, "app-7") == "closed"
    assert len(recorded(sandbox)) == 7


# -- 2. oauth_* and _method, however they are encoded ---------------------------------------------

# The query half of item 2 is tests/gateway/test_handler.py::
# test_vendor_oauth_params_are_refused_before_signing (each encoding as a query and as a form).


@pytest.mark.parametrize(
    "form", ["%6Fauth_verifier=x", "title=a&o%61uth_token=b", "_method=DELETE", "%5fmethod=PUT"]
)
async def test_encoded_form_fields_are_refused(proxy, sandbox, http, form):
    token = await proxy.token()
    headers = {**auth(token), "Content-Type": f"{FORM}; charset=utf-8"}
    async with http.post(
        proxy.app_url("gradebook/v1p2/results"), data=form.encode(), headers=headers
    ) as resp:
        assert resp.status == 400
        assert_imsx(await resp.json())
    async with http.get(proxy.app_url("v1p1/users"), data=form.encode(), headers=headers) as resp:
        assert resp.status == 400
    assert recorded(sandbox) == []


async def test_names_that_merely_resemble_are_forwarded(proxy, sandbox, http):
    token = await proxy.token()
    query = "filter=familyName%3D%27oauth_x%27&fields=sourcedId&method=x"
    url = URL(proxy.app_url("v1p1/users") + "?" + query, encoded=True)
    async with http.get(url, headers=auth(token)) as resp:
        assert resp.status == 200
    assert recorded(sandbox)[-1].path.endswith("?" + query)


async def test_a_second_content_type_is_refused(proxy, sandbox, http):
    """The proxy and the district could each read another one: a form to the district only
    (aiohttp's parser refuses the second; this holds it there)."""
    token = await proxy.token()
    raw = (
        b"POST /app-7/ims/oneroster/gradebook/v1p2/results HTTP/1.1\r\nHost: p\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Type: " + FORM.encode() + b"\r\n"
        b"Content-Length: 14\r\nConnection: close\r\n\r\n_method=DELETE"
    )
    answer = await raw_exchange(int(proxy.url.rsplit(":", 1)[1]), raw)
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert recorded(sandbox) == []


# -- 3 and 4. Headers that never reach the district ----------------------------------------------

NEVER_FORWARDED = {
    "X-HTTP-Method-Override": "DELETE",
    "X-Method-Override": "DELETE",
    "X-Original-URL": "/ims/oneroster/v1p1/demographics",
    "X-Rewrite-URL": "/ims/oneroster/v1p1/demographics",
    "Forwarded": "for=10.0.0.1;proto=https",
    "X-Forwarded-For": "10.0.0.1",
    "X-Forwarded-User": "district-admin",
    "X-Forwarded-Client-Cert": "Hash=abc;Subject=CN=admin",
    "x-FORWARDED-anything-new": "1",
    "X-Real-IP": "10.0.0.1",
    "True-Client-IP": "10.0.0.1",
    "CF-Connecting-IP": "10.0.0.1",
    "X-Client-IP": "10.0.0.1",
    "X-Cluster-Client-IP": "10.0.0.1",
    "X-Original-Forwarded-For": "10.0.0.1",
    "X-HTTP-Method": "DELETE",
}


async def test_override_and_forwarded_headers_never_reach_the_district(proxy, sandbox, http):
    token = await proxy.token()
    headers = {**auth(token), **NEVER_FORWARDED, "X-Vendor-Trace": "kept"}
    async with http.post(
        proxy.app_url("gradebook/v1p2/results"),
        json={"results": []},
        headers=headers,
    ) as resp:
        assert resp.status < 500
    async with http.get(proxy.app_url("v1p1/orgs"), headers=headers) as resp:
        assert resp.status == 200
    entries = recorded(sandbox)
    assert [e.method for e in entries] == ["POST", "GET"]
    for entry in entries:
        names = {name.lower() for name, _ in entry.headers}
        assert names.isdisjoint(n.lower() for n in NEVER_FORWARDED), names
        assert entry.header("X-Vendor-Trace") == ["kept"]


# -- 5. The district's token URL is not the vendor's business -------------------------------------


@pytest.fixture
async def oauth2_sandbox() -> Any:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    running = await start_sandbox(SandboxOptions(auth="oauth2"))
    yield running
    await running.close()


async def test_token_endpoint_failure_hides_its_url(
    oauth2_sandbox, start_proxy, tmp_path, http, caplog
):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: refused
    port = sock.getsockname()[1]
    hung = await asyncio.start_server(lambda r, w: asyncio.sleep(30), "127.0.0.1", 0)
    hung_port = hung.sockets[0].getsockname()[1]
    try:
        doc = base_config(tmp_path, oauth2_sandbox, upstream_timeout="500ms")
        doc["districts"]["springfield"]["token_url"] = f"http://127.0.0.1:{port}/secret-path/token"
        doc["districts"]["hung"] = dict(
            doc["districts"]["springfield"], token_url=f"http://127.0.0.1:{hung_port}/hung-token"
        )
        doc["connections"]["app-9"] = dict(doc["connections"]["app-7"], district="hung")
        proxy = await start_proxy(oauth2_sandbox, doc)
        token = await proxy.token()
        caplog.set_level(logging.INFO, logger="oneroster_proxy")
        for app, status, where in (("app-7", 502, str(port)), ("app-9", 504, str(hung_port))):
            async with http.get(proxy.app_url("v1p1/orgs", app=app), headers=auth(token)) as resp:
                assert resp.status == status
                text = await resp.text()
            assert_imsx(json.loads(text))
            assert "the district's token endpoint failed" in text
            assert where not in text and "token" in text and "127.0.0.1" not in text
            # The operator's log line names the endpoint.
            assert any(where in r.getMessage() or where in str(r.__dict__) for r in caplog.records)
        assert recorded(oauth2_sandbox) == []
    finally:
        sock.close()
        hung.close()


# -- 6. Rotation without grace ends JWTs; guessing the client secret is throttled -----------------


async def test_rotate_without_grace_ends_the_vendors_jwts(proxy, http):
    url = proxy.app_url("v1p1/orgs")
    jwt_before = await get_jwt(proxy, http)
    opaque = await proxy.token()
    assert await status_of(http, url, jwt_before) == 200
    async with http.post(
        f"{proxy.admin_url}/admin/vendors/acme/tokens/rotate",
        json={"grace": "0s"},
        headers=auth(ADMIN_TOKEN),
    ) as resp:
        assert resp.status == 201
        rotated = (await resp.json())["token"]
    assert await status_of(http, url, jwt_before) == 401
    assert await status_of(http, url, opaque) == 401
    assert await status_of(http, url, rotated) == 200
    # A JWT fetched after the rotation works.
    assert await status_of(http, url, await get_jwt(proxy, http)) == 200


@pytest.mark.slow  # the CLI runs as a subprocess
async def test_cli_rotation_without_grace_ends_jwts_on_running_proxies(proxy, http):
    from tests.cli.test_tokens import run_cli

    url = proxy.app_url("v1p1/orgs")
    jwt_before = await get_jwt(proxy, http)
    assert await status_of(http, url, jwt_before) == 200
    code, out, err = await run_cli(
        "tokens", "rotate", "acme", "--config", str(proxy.config_path), "--grace", "0s"
    )
    assert code == 0, err
    assert "JWTs issued to this vendor so far: ended" in out
    assert out.splitlines()[-1].startswith("orp_")  # the token is still the last line
    await asyncio.sleep(1.2)  # the store's cache_ttl in these tests is 1s
    assert await status_of(http, url, jwt_before) == 401
    events = await proxy.services.store.list_audit()
    rotate = [e for e in events if e.action == "token.rotate"][-1]
    assert rotate.detail["jwts_issued_before"] is not None


async def test_failed_client_authentications_are_throttled_per_address(proxy, http):
    form = {"grant_type": "client_credentials"}
    for _ in range(10):
        status, data, _ = await token_request(proxy, http, form, basic("acme", "wrong-guess"))
        assert (status, data["error"]) == (401, "invalid_client")
    status, data, headers = await token_request(proxy, http, form, basic("acme", "wrong-guess"))
    assert status == 429
    assert isinstance(data["error"], str) and "error_description" in data
    assert int(headers["Retry-After"]) >= 1
    # While throttled, the right secret from that address is refused too: no oracle.
    status, _, _ = await token_request(proxy, http, form, basic("acme", ACME_CLIENT_SECRET))
    assert status == 429


async def test_failed_client_authentications_are_throttled_per_client_id(
    sandbox, start_proxy, tmp_path, http
):
    """Behind a trusted balancer each guess comes from another address; the client id's own
    budget (60 a minute) still runs out."""
    proxy = await start_proxy(sandbox, trust_forwarded=True)
    form = {"grant_type": "client_credentials"}
    statuses = []
    for i in range(80):
        hdrs = {**basic("acme", f"guess-{i}"), "X-Forwarded-For": f"203.0.113.{i}"}
        status, _, _ = await token_request(proxy, http, form, hdrs)
        statuses.append(status)
        if status == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    assert len(statuses) > 60, "a burst of 60 guesses a minute (one refills each second)"
    hdrs = {**basic("acme", ACME_CLIENT_SECRET), "X-Forwarded-For": "198.51.100.7"}
    status, data, headers = await token_request(proxy, http, form, hdrs)
    assert status == 429 and "Retry-After" in headers
    # Another vendor's client id is not held up by acme's guessers.
    hdrs = {**basic("other", "nope"), "X-Forwarded-For": "198.51.100.8"}
    status, data, _ = await token_request(proxy, http, form, hdrs)
    assert (status, data["error"]) == (401, "invalid_client")
