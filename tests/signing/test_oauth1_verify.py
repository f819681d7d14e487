"""Independent verification: requests signed by our signer, sent over HTTP, checked by a strict
RFC 5849 verifier (oauthlib's server-side ``SignatureOnlyEndpoint``) on 127.0.0.1.

The client sends each URL with ``yarl.URL(url, encoded=True)``, so the request target on the
wire is the one that was signed; the server rebuilds the request URI from the raw target it
received and reports what it decoded, so the test also sees the query reach the district as
the vendor wrote it.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

from proxy.signing.oauth1 import OAuth1Signer
from tests.support import serve_on_loopback

KEY = "InfiniteCampus_acme_6f1c0e4e-2b7d-4f6a-9d1e-3c2b1a0f9e8d"
SECRET = "p+a/s=s~w&o rd-é"
FORM = "application/x-www-form-urlencoded"


class _Validator(RequestValidator):  # type: ignore[misc]
    """Strict where it matters: one key, its secret, nonces never reused, oauthlib's default
    nonce shape (20-30 letters and digits) and 600 s timestamp window."""

    enforce_ssl = False

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.seen: set[tuple[str, str]] = set()

    @property
    def allowed_signature_methods(self) -> tuple[str, ...]:
        return ("HMAC-SHA1", "HMAC-SHA256")

    @property
    def dummy_client(self) -> str:
        return "dummy"

    def check_client_key(self, client_key: str) -> bool:
        # District keys are longer than oauthlib's default 20-30 characters.
        return 0 < len(client_key) <= 200

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == KEY

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.secret if client_key == KEY else "dummy"

    def validate_timestamp_and_nonce(
        self,
        client_key: str,
        timestamp: str,
        nonce: str,
        request: Any,
        request_token: str | None = None,
        access_token: str | None = None,
    ) -> bool:
        if (timestamp, nonce) in self.seen:
            return False
        self.seen.add((timestamp, nonce))
        return True


@dataclass
class District:
    url: str
    secret: str = SECRET
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def district() -> AsyncIterator[District]:
    holder = District(url="")
    validator = _Validator(SECRET)
    endpoint = SignatureOnlyEndpoint(validator)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        uri = f"http://{request.host}{request.raw_path}"
        headers = dict(request.headers)
        validator.secret = holder.secret
        valid, _ = endpoint.validate_request(
            uri, request.method, body.decode("utf-8") if body else None, headers
        )
        record = {
            "valid": valid,
            "raw_path": request.raw_path,
            "query": list(request.query.items()),
        }
        holder.seen.append(record)
        return web.json_response(record, status=200 if valid else 401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner, port = await serve_on_loopback(app)
    holder.url = f"http://127.0.0.1:{port}"
    yield holder
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _send(
    session: aiohttp.ClientSession,
    signer: OAuth1Signer,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    signed_url: str | None = None,
) -> tuple[int, dict[str, Any]]:
    auth = signer.authorization(method, signed_url or url, body=body, content_type=content_type)
    headers = {"Authorization": auth}
    if content_type:
        headers["Content-Type"] = content_type
    async with session.request(
        method, yarl.URL(url, encoded=True), data=body, headers=headers
    ) as response:
        return response.status, await response.json()


TRICKY_TARGETS = [
    "/ims/oneroster/v1p1/users",
    "/ims/oneroster/v1p1/users?limit=100&offset=200",
    "/ims/oneroster/v1p1/users?filter=familyName%3D%27O%27Brien%27%20AND%20status%3D%27active%27",
    "/ims/oneroster/v1p1/users?filter=familyName='O'Brien'",
    "/ims/oneroster/v1p1/users?filter=givenName%3D%27Zo%C3%AB%27",
    "/ims/oneroster/v1p1/users?q=a+b&q=a%2Bb&q=%2b",
    "/ims/oneroster/v1p1/users?t=~&t=%7E&s=*&s=%2A",
    "/ims/oneroster/v1p1/users?a=&b&&c=1&a=",
    "/ims/oneroster/v1p1/users?sort=familyName&sort=givenName&sort=familyName",
    "/ims/oneroster/v1p1/users?fields=sourcedId,givenName&x=a;b&y=:@!$/?",
    "/ims/oneroster/rostering/v1p2/schools/s%2F1/classes?limit=1",
    "/ims/oneroster/v1p1/users/~me?z=%20%20",
]


@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1"])
@pytest.mark.parametrize("target", TRICKY_TARGETS)
async def test_tricky_queries_verify(
    district: District, session: aiohttp.ClientSession, target: str, method: str
) -> None:
    signer = OAuth1Signer(KEY, SECRET, method)
    status, seen = await _send(session, signer, "GET", district.url + target)
    assert status == 200, seen
    assert seen["raw_path"] == target  # on the wire exactly as signed
    # and the district decodes the query the vendor wrote, "+" as a space included
    query = urllib.parse.urlsplit(target).query
    expected = urllib.parse.parse_qsl(query, keep_blank_values=True)
    assert [tuple(pair) for pair in seen["query"]] == expected


@pytest.mark.parametrize("secret", ["a+b/c=d~e&f", "&&==", "ünïcødé ☃", "", "%2B%", "x" * 100])
async def test_secrets_verify(
    district: District, session: aiohttp.ClientSession, secret: str
) -> None:
    district.secret = secret
    signer = OAuth1Signer(KEY, secret)
    status, seen = await _send(session, signer, "GET", district.url + TRICKY_TARGETS[2])
    assert status == 200, seen


@pytest.mark.parametrize("http_method", ["GET", "POST", "PUT", "DELETE"])
async def test_form_body_verifies_on_every_method(
    district: District, session: aiohttp.ClientSession, http_method: str
) -> None:
    signer = OAuth1Signer(KEY, SECRET)
    url = district.url + "/ims/oneroster/v1p1/users?limit=5"
    body = b"filter=status%3D%27active%27&x=a+b&flag"
    status, seen = await _send(session, signer, http_method, url, body=body, content_type=FORM)
    assert status == 200, seen


async def test_json_body_verifies(district: District, session: aiohttp.ClientSession) -> None:
    signer = OAuth1Signer(KEY, SECRET)
    url = district.url + "/ims/oneroster/v1p1/lineItems/li-1"
    body = b'{"lineItem": {"sourcedId": "li-1", "title": "a=b&c"}}'
    status, seen = await _send(
        session, signer, "PUT", url, body=body, content_type="application/json"
    )
    assert status == 200, seen


async def test_verifier_refuses_what_was_not_signed(
    district: District, session: aiohttp.ClientSession
) -> None:
    """The negative control: the verifier is not a rubber stamp."""
    signer = OAuth1Signer(KEY, SECRET)
    base = district.url + "/ims/oneroster/v1p1/users"
    # the query on the wire differs from the query signed by one character
    status, _ = await _send(session, signer, "GET", base + "?q=a%2Bb", signed_url=base + "?q=a+b")
    assert status == 401
    # a form body that was changed after signing
    auth = signer.authorization("POST", base, body=b"a=1", content_type=FORM)
    async with session.post(
        yarl.URL(base, encoded=True),
        data=b"a=2",
        headers={"Authorization": auth, "Content-Type": FORM},
    ) as response:
        assert response.status == 401
    # the wrong secret
    status, _ = await _send(session, OAuth1Signer(KEY, SECRET + "x"), "GET", base)
    assert status == 401


async def test_fresh_nonces_pass_a_replay_check(
    district: District, session: aiohttp.ClientSession
) -> None:
    signer = OAuth1Signer(KEY, SECRET)
    url = district.url + "/ims/oneroster/v1p1/users?limit=1"
    for _ in range(20):
        status, _ = await _send(session, signer, "GET", url)
        assert status == 200
    # a replayed header is refused, so the loop above really needed fresh nonces
    auth = signer.authorization("GET", url, timestamp=str(int(time.time())), nonce="a" * 24)
    for expected in (200, 401):
        async with session.get(
            yarl.URL(url, encoded=True), headers={"Authorization": auth}
        ) as response:
            assert response.status == expected
