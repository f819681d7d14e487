"""Streaming with backpressure both ways, through the real proxy process (docs/http-api.md).

docs/http-api.md: bodies stream both ways with backpressure, so memory stays flat
whatever the size: a 300 MB users page passes to a slow client through a proxy holding
< 150 MB RSS, and PUT/POST JSON bodies reach the district byte for byte.

The proxy runs as a subprocess (``oneroster-proxy serve``), exactly as deployed, so its RSS is
its own; the sandbox district and the clients run in the test process. No timing assertions:
speed is the benchmark's business (``bench/run.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client

from tests.support import base_config, free_port, serve_on_loopback, toml_dumps

ROOT = Path(__file__).resolve().parents[1]
# 92,000 synthetic users of ~3.4 KB each: a users page of ~315 MB (300 MiB).
SYNTHETIC_USERS = 92_000
SYNTHETIC_PADDING = 3000
MIN_PAGE_BYTES = 300 * 2**20
RSS_LIMIT_MB = 150
# The slow phase: long enough that a proxy reading the district faster than the client reads
# it would hold far more than RSS_LIMIT_MB by its end (the sandbox writes > 100 MB/s).
SLOW_SECONDS = 2.5
SLOW_READ = 8 * 1024
SLOW_PAUSE = 0.005


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Peak VmRSS of a process, sampled every 50 ms in a thread (the event loop is busy)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = rss_kb(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
                self.samples += 1
            except OSError:
                return  # the process is gone; the test will say why
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


@dataclass
class ProxyProcess:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    log: Path

    def app_url(self, rest: str) -> str:
        return f"{self.url}/app-7/ims/oneroster/{rest}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


CLI = [sys.executable, "-c", "from proxy.cli import main; main()"]


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"proxy did not listen on {port}:\n{log.read_text()}")


@pytest.fixture
async def synthetic_sandbox() -> AsyncIterator[Any]:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    running = await start_sandbox(
        SandboxOptions(synthetic_users=SYNTHETIC_USERS, synthetic_padding=SYNTHETIC_PADDING)
    )
    yield running
    await running.close()


@pytest.fixture
def proxy_process(tmp_path: Path, synthetic_sandbox: Any) -> Iterator[ProxyProcess]:
    """``oneroster-proxy serve`` in its own process, in front of the synthetic sandbox."""
    port = free_port()
    doc = base_config(tmp_path, synthetic_sandbox, upstream_timeout="30s", drain_timeout="2s")
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    config = tmp_path / "proxy.toml"
    config.write_text(toml_dumps(doc))
    issued = subprocess.run(
        [*CLI, "tokens", "issue", "acme", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    log = tmp_path / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "--config", str(config)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_listening(port, proc, log)
        yield ProxyProcess(proc, f"http://127.0.0.1:{port}", token, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Digest:
    """What a body was, without keeping it: size, sha256, first and last bytes, and how many
    user records it held (counted across chunk boundaries)."""

    size: int = 0
    head: bytes = b""
    tail: bytes = b""
    records: int = 0

    def __post_init__(self) -> None:
        self._sha = hashlib.sha256()
        self._carry = b""

    MARK = b'{"sourcedId":"syn-user-'

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._sha.update(chunk)
        if len(self.head) < 4096:
            self.head += chunk[: 4096 - len(self.head)]
        self.tail = (self.tail + chunk)[-4096:]
        window = self._carry + chunk
        self.records += window.count(self.MARK)
        # Keep the last len(MARK)-1 bytes: a mark split across chunks is counted once, later.
        self._carry = window[-(len(self.MARK) - 1) :]
        if self.MARK in self._carry:  # pragma: no cover - impossible by length
            raise AssertionError("carry holds a whole mark")

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class Rewritten:
    """``digest`` fed with a byte stream in which ``old`` reads ``new``, whatever the chunk
    boundaries: the district's page as the proxy's rewrite_hrefs (on by default) delivers it."""

    def __init__(self, old: bytes, new: bytes, digest: Digest) -> None:
        self.old, self.new, self.digest = old, new, digest
        self.tail = b""

    def update(self, chunk: bytes) -> None:
        data = self.tail + chunk
        whole = len(data) - len(self.old) + 1  # a match starting before this is complete
        at = 0
        while (found := data.find(self.old, at)) != -1 and found < whole:
            self.digest.update(data[at:found] + self.new)
            at = found + len(self.old)
        cut = max(at, whole)
        self.digest.update(data[at:cut])
        self.tail = data[cut:]

    def close(self) -> None:
        self.digest.update(self.tail)
        self.tail = b""


async def read_slowly_then_fast(response: aiohttp.ClientResponse, digest: Digest) -> None:
    """Small reads with pauses at first (the vendor's socket backs up, and so must the
    proxy's reads of the district), then large reads so the test finishes quickly."""
    until = time.monotonic() + SLOW_SECONDS
    while time.monotonic() < until:
        chunk = await response.content.read(SLOW_READ)
        if not chunk:
            return
        digest.update(chunk)
        await asyncio.sleep(SLOW_PAUSE)
    async for chunk in response.content.iter_chunked(1 << 18):
        digest.update(chunk)


def oauth1_headers(sandbox: Any, url: str) -> dict[str, str]:
    """Signed by oauthlib, independent of the proxy's signer, for a direct sandbox fetch."""
    client = Client(
        sandbox.key, client_secret=sandbox.secret, signature_method=SIGNATURE_HMAC_SHA256
    )
    _, headers, _ = client.sign(url, http_method="GET")
    return dict(headers)


async def test_300mb_users_page_reaches_a_slow_client_through_a_flat_proxy(
    synthetic_sandbox: Any, proxy_process: ProxyProcess
) -> None:
    pid = proxy_process.proc.pid
    path = f"v1p1/users?limit={SYNTHETIC_USERS}"
    via_proxy = Digest()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
        # One small request first, so the idle figure includes a warmed-up proxy.
        async with http.get(
            proxy_process.app_url("v1p1/users?limit=1"), headers=proxy_process.auth
        ) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
        idle_mb = rss_kb(pid) / 1024
        with RssSampler(pid) as sampler:
            async with http.get(proxy_process.app_url(path), headers=proxy_process.auth) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["X-Total-Count"] == str(SYNTHETIC_USERS)
                await read_slowly_then_fast(resp, via_proxy)
                declared = resp.headers.get("Content-Length")
        assert proxy_process.proc.poll() is None, proxy_process.log_tail()

        # The same page straight from the district: what the vendor had to receive.
        direct = Digest()
        rewritten = Rewritten(
            f"{synthetic_sandbox.base_url}/ims/oneroster/".encode(),
            f"{proxy_process.url}/app-7/ims/oneroster/".encode(),
            direct,
        )
        url = f"{synthetic_sandbox.base_url}/ims/oneroster/{path}"
        async with http.get(url, headers=oauth1_headers(synthetic_sandbox, url)) as resp:
            assert resp.status == 200, await resp.text()
            async for chunk in resp.content.iter_chunked(1 << 18):
                rewritten.update(chunk)
        rewritten.close()

    assert via_proxy.size >= MIN_PAGE_BYTES, via_proxy.size
    if declared is not None:
        assert int(declared) == via_proxy.size
    assert via_proxy.size == direct.size
    assert via_proxy.sha256 == direct.sha256
    # The structure, checked without parsing 300 MB: every record, first to last, and the close.
    assert via_proxy.records == SYNTHETIC_USERS
    assert via_proxy.head.startswith(b'{"users":[{"sourcedId":"syn-user-000000000"')
    last = f'"sourcedId":"syn-user-{SYNTHETIC_USERS - 1:09d}"'.encode()
    assert last in via_proxy.tail
    assert via_proxy.tail.endswith(b"}]}")
    json.loads(via_proxy.tail[via_proxy.tail.rindex(b'{"sourcedId"') : -2])  # last record parses

    print(
        f"proxy RSS: idle {idle_mb:.1f} MB, peak {sampler.peak_mb:.1f} MB over "
        f"{via_proxy.size / 2**20:.0f} MB ({sampler.samples} samples)"
    )
    assert sampler.samples > 10, "the RSS sampler did not run during the transfer"
    assert sampler.peak_mb < RSS_LIMIT_MB, (
        f"proxy peak RSS {sampler.peak_mb:.0f} MB (idle {idle_mb:.0f} MB) while streaming "
        f"{via_proxy.size / 2**20:.0f} MB"
    )


def _big_json(name: str, target_bytes: int) -> bytes:
    """A JSON document of about ``target_bytes`` with varied content (not one repeated byte),
    so that a reordered, dropped or duplicated chunk shows in the comparison."""
    notes = [f"row {i}: résumé ✓ {'%x' % (i * 2654435761 % 2**32)} " * 3 for i in range(4000)]
    body = {name: {"title": "Essay 1", "description": "", "notes": []}}
    size = 0
    i = 0
    while size < target_bytes:
        note = notes[i % len(notes)] + str(i)
        body[name]["notes"].append(note)
        size += len(note.encode()) + 4
        i += 1
    return json.dumps(body, ensure_ascii=False).encode()


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


def _received(sandbox: Any, method: str, path_part: str) -> list[Any]:
    return [r for r in sandbox.recorded if r.method == method and path_part in r.raw_path]


async def test_large_write_bodies_arrive_byte_for_byte(
    synthetic_sandbox: Any, proxy_process: ProxyProcess
) -> None:
    put_body = _big_json("lineItem", 5 * 2**20)
    post_body = json.dumps(
        {
            "lineItems": [
                json.loads(_big_json("lineItem", 2**20))["lineItem"] | {"sourcedId": f"li-bulk-{i}"}
                for i in range(3)
            ]
        },
        ensure_ascii=False,
    ).encode()
    headers = {**proxy_process.auth, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        # Streamed by the vendor (chunked, no Content-Length) ...
        async with http.put(
            proxy_process.app_url("v1p1/lineItems/li-stream-1"),
            data=_chunks(put_body),
            headers=headers,
        ) as resp:
            assert resp.status == 201, await resp.text()
        # ... and with a Content-Length.
        async with http.put(
            proxy_process.app_url("v1p1/lineItems/li-sized-1"), data=put_body, headers=headers
        ) as resp:
            assert resp.status == 201, await resp.text()
            assert resp.headers.get("X-Request-Id")
        async with http.get(
            proxy_process.app_url("rostering/v1p2/classes?limit=1"), headers=proxy_process.auth
        ) as resp:
            assert resp.status == 200
            class_id = (await resp.json())["classes"][0]["sourcedId"]
        async with http.post(
            proxy_process.app_url(f"gradebook/v1p2/classes/{class_id}/lineItems"),
            data=post_body,
            headers=headers,
        ) as resp:
            assert resp.status == 201, await resp.text()
        # A later read shows the write: the district understood every byte.
        async with http.get(
            proxy_process.app_url("v1p1/lineItems/li-stream-1"), headers=proxy_process.auth
        ) as resp:
            assert resp.status == 200
            stored = (await resp.json())["lineItem"]
            assert stored["notes"] == json.loads(put_body)["lineItem"]["notes"]

    for path_part, method, sent in (
        ("lineItems/li-stream-1", "PUT", put_body),
        ("lineItems/li-sized-1", "PUT", put_body),
        (f"classes/{class_id}/lineItems", "POST", post_body),
    ):
        received = _received(synthetic_sandbox, method, path_part)
        assert len(received) == 1, f"{method} {path_part} reached the district {len(received)}x"
        entry = received[0]
        assert entry.verified, f"{method} {path_part}: the district refused the signature"
        assert len(entry.body) == len(sent)
        assert hashlib.sha256(entry.body).digest() == hashlib.sha256(sent).digest()
        names = {k.lower(): v for k, v in entry.headers}
        assert names["content-type"] == "application/json"
        assert "orp_" not in names.get("authorization", ""), "the vendor token went upstream"
        assert re.match(r"OAuth ", names["authorization"])

    assert proxy_process.proc.poll() is None, proxy_process.log_tail()
    # A big body is streamed, not held: the proxy is nowhere near the body sizes times copies.
    assert rss_kb(proxy_process.proc.pid) / 1024 < RSS_LIMIT_MB


if os.name != "posix" or not Path("/proc/self/status").exists():  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="reads VmRSS from /proc")


async def _fake_district(handler: Any) -> tuple[Any, str]:
    from aiohttp import web

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, port = await serve_on_loopback(app, shutdown_timeout=0.1)
    return runner, f"http://127.0.0.1:{port}"


async def test_district_stalling_mid_body_breaks_the_transfer(start_proxy, http):
    """upstream_timeout bounds each idle read; when it passes after the head went out, the
    vendor must see a broken transfer, never the head of a 504 written into the body."""
    from types import SimpleNamespace

    import aiohttp
    from aiohttp import web

    total = 200_000

    async def district(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = total
        await response.prepare(request)
        await response.write(b"x" * (total // 2))
        await asyncio.sleep(3)  # stalls past the proxy's upstream_timeout
        await response.write(b"y" * (total // 2))
        return response

    runner, base_url = await _fake_district(district)
    try:
        fake = SimpleNamespace(base_url=base_url, key="k", secret="s")
        proxy = await start_proxy(fake, upstream_timeout="500ms")
        token = await proxy.token()
        async with http.get(
            proxy.app_url("v1p1/users"), headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200
            try:
                async with asyncio.timeout(5):  # a vendor left waiting is a failure too
                    body = await resp.read()
            except aiohttp.ClientPayloadError:
                body = None
        assert body is None, f"a complete-looking body of {len(body)} bytes: {body[-200:]!r}"
    finally:
        await runner.cleanup()
