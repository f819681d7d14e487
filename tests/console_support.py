"""Test support for the console: an HTTP client that signs in the way a browser does (cookie
jar, CSRF field scraped from each form) and keeps every page it saw, to scan them for
secrets."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from tests.support import ADMIN_TOKEN

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class ConsoleClient:
    def __init__(self, admin_url: str) -> None:
        self.base = admin_url
        # unsafe=True: keep cookies from an IP-address host (127.0.0.1), as a browser does.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.pages: list[str] = []
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        async with self.http.get(self.base + path, **kw) as resp:
            text = await resp.text()
            self._seen(text)
            return resp.status, text, resp.headers

    async def post(
        self, path: str, data: dict[str, Any] | list[tuple[str, str]], *, csrf: bool = True
    ) -> tuple[int, str, Any]:
        form = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            form.append(("csrf", self.csrf))
        async with self.http.post(self.base + path, data=form) as resp:
            text = await resp.text()
            self._seen(text)
            return resp.status, text, resp.headers

    def _seen(self, text: str) -> None:
        self.pages.append(text)
        match = CSRF_RE.search(text)
        if match:
            self.csrf = match.group(1)

    async def sign_in(self, token: str = ADMIN_TOKEN) -> tuple[int, str, Any]:
        await self.get("/console/signin")
        return await self.post("/console/signin", {"token": token})
