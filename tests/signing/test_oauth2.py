"""OAuth2 client-credentials token source against a real token endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.errors import UpstreamTokenError, UpstreamTokenTimeout
from proxy.signing.oauth2 import OAuth2TokenSource
from tests.support import serve_on_loopback

SCOPES = [
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly",
    "https://purl.imsglobal.org/spec/or/v1p2/scope/gradebook.readonly",
]
KEY = "client:id+with/odd=chars é"
SECRET = "s3cr+t/with=odd~chars&more: %41 ünï"


@dataclass
class TokenEndpoint:
    """A district token endpoint that counts fetches and records what it was sent."""

    url: str = ""
    fetches: int = 0
    expires_in: Any = 3600
    delay: float = 0.0
    # Override the whole answer: (status, body bytes, content type).
    answer: tuple[int, bytes, str] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def current(self) -> str:
        return f"token-{self.fetches}"


@pytest.fixture
async def endpoint() -> AsyncIterator[TokenEndpoint]:
    state = TokenEndpoint()

    async def token(request: web.Request) -> web.Response:
        state.fetches += 1
        form = await request.post()
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        client_id = client_secret = None
        if scheme == "Basic":
            raw_id, _, raw_secret = base64.b64decode(encoded).decode().partition(":")
            # RFC 6749 §2.3.1: each part is form-urlencoded before Basic encoding.
            client_id = urllib.parse.unquote_plus(raw_id)
            client_secret = urllib.parse.unquote_plus(raw_secret)
        state.requests.append(
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "form": dict(form),
                "content_type": request.content_type,
            }
        )
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.answer is not None:
            status, body, content_type = state.answer
            return web.Response(status=status, body=body, content_type=content_type)
        if (client_id, client_secret) != (KEY, SECRET) or form.get("grant_type") != (
            "client_credentials"
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        payload: dict[str, Any] = {"access_token": state.current(), "token_type": "Bearer"}
        if state.expires_in is not None:
            payload["expires_in"] = state.expires_in
        return web.json_response(payload)

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    runner, port = await serve_on_loopback(app)
    state.url = f"http://127.0.0.1:{port}/oauth2/token"
    yield state
    await runner.cleanup()


@pytest.fixture
async def make_source(
    endpoint: TokenEndpoint,
) -> AsyncIterator[Callable[..., OAuth2TokenSource]]:
    sources: list[OAuth2TokenSource] = []

    def make(**kwargs: Any) -> OAuth2TokenSource:
        url = kwargs.pop("token_url", endpoint.url)
        secret = kwargs.pop("secret", SECRET)
        source = OAuth2TokenSource(url, KEY, secret, SCOPES, **kwargs)
        sources.append(source)
        return source

    yield make
    for source in sources:
        await source.close()


async def test_fetch_and_cache(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    source = make_source()
    assert await source.token() == "token-1"
    assert await source.token() == "token-1"
    assert endpoint.fetches == 1


async def test_request_shape(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    await make_source().token()
    (sent,) = endpoint.requests
    # Basic credentials with ":" "+" "/" "=" "&" "%" and non-ASCII decode to the originals
    assert sent["client_id"] == KEY
    assert sent["client_secret"] == SECRET
    assert sent["form"] == {"grant_type": "client_credentials", "scope": " ".join(SCOPES)}
    assert sent["content_type"] == "application/x-www-form-urlencoded"


@pytest.mark.slow  # waits out a real deadline or expiry
async def test_expiry_refresh(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    # expires_in 1 s: 10% of it (0.1 s) is the margin, since refresh_margin (60 s) is larger
    endpoint.expires_in = 1
    source = make_source()
    assert await source.token() == "token-1"
    await asyncio.sleep(0.5)
    assert await source.token() == "token-1"
    await asyncio.sleep(0.5)
    assert await source.token() == "token-2"
    assert endpoint.fetches == 2


@pytest.mark.parametrize(
    ("expires_in", "refresh_margin", "cached_for"),
    [
        (3600, 60.0, 3540),  # the margin as configured
        (3600, 5.0, 3595),
        (100, 60.0, 90),  # a short lifetime: 10% of it, not most of it
        (20, 60.0, 18),
    ],
)
async def test_refresh_margin(
    endpoint: TokenEndpoint,
    make_source: Callable[..., Any],
    expires_in: int,
    refresh_margin: float,
    cached_for: float,
) -> None:
    endpoint.expires_in = expires_in
    source = make_source(refresh_margin=refresh_margin)
    before = time.monotonic()
    await source.token()
    assert before + cached_for - 1 <= source._refresh_at <= time.monotonic() + cached_for


async def test_single_flight(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    endpoint.delay = 0.2
    fetched = []
    source = make_source(on_fetch=lambda: fetched.append(1))
    tokens = await asyncio.gather(*(source.token() for _ in range(50)))
    assert set(tokens) == {"token-1"}
    assert endpoint.fetches == 1
    assert len(fetched) == 1


async def test_single_flight_after_expiry(
    endpoint: TokenEndpoint, make_source: Callable[..., Any]
) -> None:
    endpoint.expires_in = 0.3
    endpoint.delay = 0.1
    source = make_source()
    await source.token()
    await asyncio.sleep(0.35)
    tokens = await asyncio.gather(*(source.token() for _ in range(50)))
    assert set(tokens) == {"token-2"}
    assert endpoint.fetches == 2


async def test_invalidate(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    fetched = []
    source = make_source(on_fetch=lambda: fetched.append(1))
    first = await source.token()
    await source.invalidate(first)
    second = await source.token()
    assert (first, second) == ("token-1", "token-2")
    assert endpoint.fetches == 2 and len(fetched) == 2


async def test_invalidate_stale_token(
    endpoint: TokenEndpoint, make_source: Callable[..., Any]
) -> None:
    """Two requests got 401 with token-1; the first one's retry fetched token-2; the second
    one's invalidate(token-1) must not throw token-2 away."""
    source = make_source()
    first = await source.token()
    await source.invalidate(first)
    second = await source.token()
    await source.invalidate(first)
    assert await source.token() == second
    assert endpoint.fetches == 2


async def test_many_401s_one_refetch(
    endpoint: TokenEndpoint, make_source: Callable[..., Any]
) -> None:
    endpoint.delay = 0.05
    source = make_source()
    stale = await source.token()

    async def request_that_got_401() -> str:
        await source.invalidate(stale)
        return str(await source.token())

    tokens = await asyncio.gather(*(request_that_got_401() for _ in range(20)))
    assert set(tokens) == {"token-2"}
    assert endpoint.fetches == 2


async def test_no_expires_in(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    endpoint.expires_in = None
    source = make_source()
    await source.token()
    await source.token()
    assert endpoint.fetches == 1


async def test_expires_in_as_string(
    endpoint: TokenEndpoint, make_source: Callable[..., Any]
) -> None:
    endpoint.expires_in = "3600"
    source = make_source()
    await source.token()
    await source.token()
    assert endpoint.fetches == 1


async def test_borrowed_session_is_not_closed(endpoint: TokenEndpoint) -> None:
    async with aiohttp.ClientSession() as shared:
        source = OAuth2TokenSource(
            endpoint.url, KEY, SECRET, SCOPES, session_factory=lambda: shared
        )
        assert await source.token() == "token-1"
        await source.close()
        assert not shared.closed


async def test_own_session_closed(endpoint: TokenEndpoint) -> None:
    source = OAuth2TokenSource(endpoint.url, KEY, SECRET, SCOPES)
    await source.token()
    session = source._own_session
    assert session is not None and not session.closed
    await source.close()
    assert session.closed


def _assert_clean(exc: UpstreamTokenError | UpstreamTokenTimeout) -> None:
    assert exc.status == (504 if isinstance(exc, UpstreamTokenTimeout) else 502)
    assert SECRET not in exc.description and "s3cr" not in exc.description
    assert "token endpoint" in exc.description


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (
            (
                401,
                json.dumps({"error": "invalid_client", "error_description": SECRET}).encode(),
                "application/json",
            ),
            "HTTP 401 (invalid_client)",
        ),
        ((500, b"<html>" + SECRET.encode() + b"</html>", "text/html"), "HTTP 500"),
        ((200, b"not json", "text/plain"), "JSON object"),
        ((200, b"[1, 2]", "application/json"), "JSON object"),
        ((200, b'{"token_type": "bearer"}', "application/json"), "access_token"),
        ((200, b'{"access_token": ""}', "application/json"), "access_token"),
        ((200, b'{"access_token": 5}', "application/json"), "access_token"),
        ((200, b'{"access_token": "t", "token_type": "mac"}', "application/json"), "bearer"),
        ((200, b'{"access_token": "t", "expires_in": -5}', "application/json"), "expires_in"),
        ((200, b'{"access_token": "t", "expires_in": "soon"}', "application/json"), "expires_in"),
        ((200, b'{"access_token": "t", "expires_in": true}', "application/json"), "expires_in"),
        ((200, b"x" * 70_000, "text/plain"), "oversized"),
    ],
)
async def test_bad_answers(
    endpoint: TokenEndpoint,
    make_source: Callable[..., Any],
    answer: tuple[int, bytes, str],
    needle: str,
) -> None:
    endpoint.answer = answer
    with pytest.raises(UpstreamTokenError) as info:
        await make_source().token()
    assert needle in info.value.description
    _assert_clean(info.value)


async def test_wrong_secret(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    with pytest.raises(UpstreamTokenError) as info:
        await make_source(secret="wrong-" + SECRET).token()
    assert "HTTP 401 (invalid_client)" in info.value.description
    _assert_clean(info.value)


async def test_connection_refused(make_source: Callable[..., Any]) -> None:
    # A port that was just free: nothing listens there.
    probe, port = await serve_on_loopback(web.Application())
    await probe.cleanup()
    url = f"http://127.0.0.1:{port}/oauth2/token"
    with pytest.raises(UpstreamTokenError) as info:
        await make_source(token_url=url).token()
    assert "could not be reached" in info.value.description
    assert isinstance(info.value.__cause__, aiohttp.ClientError)
    _assert_clean(info.value)


@pytest.mark.slow  # waits out a real deadline or expiry
async def test_timeout(endpoint: TokenEndpoint, make_source: Callable[..., Any]) -> None:
    endpoint.delay = 0.6
    # A timeout is the gateway's 504 (docs/http-api.md: within upstream_timeout), not a 502.
    with pytest.raises(UpstreamTokenTimeout) as info:
        await make_source(timeout=0.1).token()
    assert info.value.status == 504
    assert "did not answer in time" in info.value.description
    assert isinstance(info.value.__cause__, TimeoutError)
    _assert_clean(info.value)


async def test_failure_is_not_cached(
    endpoint: TokenEndpoint, make_source: Callable[..., Any]
) -> None:
    fetched = []
    source = make_source(on_fetch=lambda: fetched.append(1))
    endpoint.answer = (503, b"busy", "text/plain")
    with pytest.raises(UpstreamTokenError):
        await source.token()
    endpoint.answer = None
    assert await source.token() == "token-2"
    assert len(fetched) == 2


async def test_credentials_in_url_not_in_errors(make_source: Callable[..., Any]) -> None:
    with pytest.raises(UpstreamTokenError) as info:
        await make_source(token_url="http://user:hunter2@127.0.0.1:9/token?key=abc").token()
    assert isinstance(info.value.__cause__, ValueError)
    assert "hunter2" not in info.value.description
    assert "key=abc" not in info.value.description


def test_repr_hides_credentials() -> None:
    source = OAuth2TokenSource("https://d.example/token", KEY, SECRET, SCOPES)
    assert SECRET not in repr(source) and KEY not in repr(source)


async def test_district_token_answer_in_several_chunks_is_read_whole():
    """A district token endpoint that streams its JSON (chunked, several writes) must not be
    read as the first chunk only: that makes every request of the district a 502."""
    import json

    from aiohttp import web

    from proxy.signing.oauth2 import OAuth2TokenSource

    async def token_endpoint(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        body = json.dumps(
            {"access_token": "district-token-1", "token_type": "bearer", "expires_in": 3600}
        ).encode()
        await response.write(body[:10])
        await asyncio.sleep(0.1)
        await response.write(body[10:])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/token", token_endpoint)
    runner, port = await serve_on_loopback(app)
    source = OAuth2TokenSource(f"http://127.0.0.1:{port}/token", "key", "secret", [])
    try:
        assert await source.token() == "district-token-1"
    finally:
        await source.close()
        await runner.cleanup()
