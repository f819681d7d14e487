"""Store connections across real processes (docs/commands.md): two
``oneroster-proxy serve`` replicas on one real ``redis-server``, the sandbox as the district
verifying every signature itself, the CLI in processes of its own.

A connection added through the admin API of replica A serves on replica B within
``cache_ttl``; a renewal while about 20 requests a second flow through both gives no 5xx and,
once ``cache_ttl`` has passed, every request is signed with the new credentials; a removal
answers 404 on both; bad input through the admin API and the CLI writes nothing. Finally every
output and both whole logs are searched for the secrets.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.store.crypto import new_key
from tests.redis_server import RedisServer, require_redis_server
from tests.serve.test_server import ProxyProcess
from tests.support import ADMIN_TOKEN, auth, base_config

ROOT = Path(__file__).resolve().parents[1]
TTL = 1.0
FIRST = ("store-key-1", "first-secret-Hq2!zz-never-logged")
SECOND = ("store-key-2", "second-secret-Pw9#yy-never-logged")
ADMIN = auth(ADMIN_TOKEN)


@pytest.fixture
def redis_server():
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
async def replicas(tmp_path, sandbox, redis_server, monkeypatch):
    monkeypatch.setenv("ORP_STORE_KEY", new_key())
    doc = base_config(tmp_path, sandbox)
    doc["store"] = {
        "url": redis_server.url,
        "cache_ttl": f"{TTL:g}s",
        "secret_keys": ["${ORP_STORE_KEY}"],
    }
    started = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        started.append(await ProxyProcess(tmp_path / name, doc).start())
    yield started
    for proc in started:
        await proc.stop()


async def cli(config: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """The CLI in a process of its own; asynchronously, since the sandbox district answers
    from this test's event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from proxy.cli import main; main()",
        *args,
        "--config",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def status(http: aiohttp.ClientSession, proc: ProxyProcess, token: str, app: str) -> int:
    async with http.get(proc.app_url("v1p1/orgs?limit=1", app), headers=auth(token)) as resp:
        await resp.read()
        return resp.status


async def until(http, proc, token, app, wanted: int) -> None:
    """Poll until ``app`` answers ``wanted`` on ``proc``: it must within cache_ttl (plus the
    time the polling itself takes on a loaded machine)."""
    deadline = time.monotonic() + TTL + 3.0
    while (seen := await status(http, proc, token, app)) != wanted:
        assert time.monotonic() < deadline, f"{app} still answers {seen} on {proc.admin_url}"
        await asyncio.sleep(0.1)


def signer(rec: Any) -> str | None:
    for name, value in rec.headers:
        if name.lower() == "authorization":
            match = re.search(r'oauth_consumer_key="([^"]+)"', value)
            return match.group(1) if match else None
    return None


async def test_add_renew_remove_across_two_replicas(replicas, sandbox, http):
    a, b = replicas
    outputs: list[str] = []
    async with http.post(f"{a.admin_url}/admin/vendors/acme/tokens", headers=ADMIN) as resp:
        token = (await resp.json())["token"]

    sandbox.accept_credentials(*FIRST)
    sandbox.accept_credentials(*SECOND)
    body = {
        "app_id": "store-1",
        "vendor": "acme",
        "district": "springfield",
        "key": FIRST[0],
        "secret": FIRST[1],
        "scopes": ["roster-core.readonly"],
    }
    async with http.post(f"{a.admin_url}/admin/connections", json=body, headers=ADMIN) as resp:
        outputs.append(await resp.text())
        assert resp.status == 201
    assert await status(http, a, token, "store-1") == 200  # at once where it was added
    await until(http, b, token, "store-1", 200)
    # The checklist runs on a store connection as on a TOML one.
    code, out, err = await cli(b.config_path, "check", "store-1", "--json")
    outputs += [out, err]
    assert code == 0 and json.loads(out)["ok"] is True, out + err

    # Renew while ~20 requests a second flow through both replicas.
    results: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def load() -> None:
        i = 0
        while not stop.is_set():
            proc = (a, b)[i % 2]
            results.append((time.monotonic(), await status(http, proc, token, "store-1")))
            i += 1
            await asyncio.sleep(0.05)

    flow = asyncio.get_running_loop().create_task(load())
    await asyncio.sleep(0.5)
    renew = {"key": SECOND[0], "secret": SECOND[1]}
    async with http.put(
        f"{a.admin_url}/admin/connections/store-1/credentials", json=renew, headers=ADMIN
    ) as resp:
        outputs.append(await resp.text())
        assert resp.status == 200
    # Past cache_ttl, with room for a request that took the old connection just before it
    # lapsed and is slow to reach the district on a loaded machine.
    await asyncio.sleep(TTL + 1.0)
    mark = len(sandbox.recorded)
    await asyncio.sleep(1.0)
    stop.set()
    await flow

    assert len(results) > 20 and all(code == 200 for _, code in results), results
    after = [r for r in sandbox.recorded[mark:] if "/ims/oneroster/" in r.path]
    assert after and all(r.verified and r.status == 200 for r in after)
    assert {signer(r) for r in after} == {SECOND[0]}, "an old credential signed after cache_ttl"
    assert any(signer(r) == FIRST[0] for r in sandbox.recorded[:mark])

    # Bad input through both interfaces: refused, nothing written.
    bad = {**body, "app_id": "store-2", "scopes": ["gradebook.write"]}
    async with http.post(f"{b.admin_url}/admin/connections", json=bad, headers=ADMIN) as resp:
        outputs.append(await resp.text())
        assert resp.status == 400
    code, out, err = await cli(
        b.config_path, "connections", "add", "store-3", "--vendor", "acme",
        "--district", "nowhere", "--key", "k", "--scopes", "roster.readonly", stdin=FIRST[1],
    )  # fmt: skip
    outputs += [out, err]
    assert code == 2 and "connections.store-3.district" in err
    code, out, err = await cli(b.config_path, "connections", "list", "--json")
    outputs += [out, err]
    assert [c["appId"] for c in json.loads(out) if c["source"] == "store"] == ["store-1"]

    # Removed through the CLI: 404 on both within cache_ttl.
    code, out, err = await cli(a.config_path, "connections", "remove", "store-1")
    outputs += [out, err]
    assert code == 0, err
    await until(http, a, token, "store-1", 404)
    await until(http, b, token, "store-1", 404)
    code, out, err = await cli(a.config_path, "audit", "--json")
    outputs += [out, err]
    actions = [e["action"] for e in json.loads(out) if e["action"].startswith("connection.")]
    assert actions == ["connection.add", "connection.renew", "connection.remove"]

    async with http.get(f"{a.admin_url}/admin/connections", headers=ADMIN) as resp:
        outputs.append(await resp.text())
    for text in [*outputs, a.text(), b.text()]:
        for secret in (FIRST[1], SECOND[1]):
            assert secret not in text
