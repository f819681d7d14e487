"""Fixtures for the sandbox district's own tests: real districts on loopback, signed by oauthlib.

Requests are signed with oauthlib's client (never the proxy's signer), so these tests check the
sandbox against the reference implementation of RFC 5849.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, SIGNATURE_TYPE_AUTH_HEADER, Client
from yarl import URL

from proxy.sandbox import RunningSandbox, SandboxOptions, start_sandbox


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def sign(
    sbx: RunningSandbox,
    method: str,
    url: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    signature_method: str = SIGNATURE_HMAC_SHA256,
    signature_type: str = SIGNATURE_TYPE_AUTH_HEADER,
    key: str | None = None,
    secret: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> tuple[str, dict[str, str], str | None]:
    client = Client(
        key or sbx.key,
        client_secret=secret if secret is not None else sbx.secret,
        signature_method=signature_method,
        signature_type=signature_type,
        timestamp=timestamp,
        nonce=nonce,
    )
    signed_url, signed_headers, signed_body = client.sign(url, method, body=body, headers=headers)
    return signed_url, dict(signed_headers), signed_body


async def call(
    http: aiohttp.ClientSession,
    sbx: RunningSandbox,
    path: str,
    method: str = "GET",
    *,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    signed: bool = True,
    **sign_args: Any,
) -> Answer:
    """Send ``method base_url + path`` (path with query, sent exactly as written), signed."""
    url = sbx.base_url + path
    headers = dict(headers or {})
    if signed:
        text_body = body.decode() if isinstance(body, bytes) else body
        url, headers, signed_body = sign(
            sbx, method, url, body=text_body, headers=headers, **sign_args
        )
        if signed_body is not None:
            body = signed_body
    async with http.request(method, URL(url, encoded=True), data=body, headers=headers) as resp:
        return Answer(resp.status, resp.headers, await resp.read())


def q(text: str) -> str:
    """Percent-encode a query value the way clients do."""
    return urllib.parse.quote(text, safe="")


@pytest.fixture
async def make_sandbox() -> AsyncIterator[Callable[..., Awaitable[RunningSandbox]]]:
    started: list[RunningSandbox] = []

    async def make(**options: Any) -> RunningSandbox:
        running = await start_sandbox(SandboxOptions(**options))
        started.append(running)
        return running

    yield make
    for running in started:
        await running.close()


@pytest.fixture
async def sbx(make_sandbox: Callable[..., Awaitable[RunningSandbox]]) -> RunningSandbox:
    return await make_sandbox()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
