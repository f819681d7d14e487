"""Scale figures for connections kept in the store (bench/README.md "Store connections").

    python bench/store_connections.py [--connections 10000] [--served 500] [--only sqlite,redis]

For each backend (a sqlite file; a ``redis-server`` started on a free loopback port), with
``--connections`` store connections (sealed secrets, one TOML district: the sandbox):

(a) store reads per uncached appId: an in-process proxy serves ``--served`` distinct appIds
    once each, then the same ones again within ``cache_ttl``; the resolver's own read counter
    says how many store reads each round cost (the design: exactly one per uncached appId, no
    scan, and none for a cached one). p50 of the first (uncached) and of the second request.
(b) RSS of a real ``serve`` process: ready with an empty store, ready with the N connections
    in the store (it has read none of them), and after serving ``--served`` of them.
(c) ``connections list --json`` of all N: wall time, the CLI's peak RSS, and the store pages
    it read (it streams pages of 500).

Figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from proxy import config as config_mod  # noqa: E402
from proxy.gateway.context import SERVICES  # noqa: E402
from proxy.sandbox import SandboxOptions  # noqa: E402
from proxy.sandbox.server import start_sandbox  # noqa: E402
from proxy.serve.server import bind_socket, start  # noqa: E402
from proxy.store import open_store  # noqa: E402
from proxy.store.base import ConnectionRecord  # noqa: E402
from proxy.store.crypto import SecretBox, new_key, parse_key  # noqa: E402
from proxy.store.redis import RedisStore  # noqa: E402
from proxy.store.redis_connections import connection_fields  # noqa: E402
from proxy.store.sqlite_connections import _C_COLUMNS, _connection_row  # noqa: E402
from proxy.tokens import issue, now_utc  # noqa: E402

CLI = [sys.executable, "-c", "from proxy.cli import main; main()"]
ADMIN = "bench-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml(store_url: str, key: str, sandbox: Any, gateway: int = 0, admin: int = 0) -> str:
    return f"""
[server]
listen = "127.0.0.1:{gateway}"
upstream_timeout = "10s"
[admin]
listen = "127.0.0.1:{admin}"
token = "{ADMIN}"
[store]
url = "{store_url}"
cache_ttl = "60s"
secret_keys = ["{key}"]
[vendors.acme]
[districts.sandbox]
base_url = "{sandbox.base_url}"
"""


def records(n: int, box: SecretBox, sandbox: Any) -> list[ConnectionRecord]:
    now = now_utc()
    return [
        ConnectionRecord(
            app_id=f"app-{i:05d}",
            vendor="acme",
            district="sandbox",
            key=sandbox.key,
            secret=box.seal(f"app-{i:05d}", sandbox.secret),
            scopes=("roster-core.readonly", "roster.readonly"),
            created=now,
            updated=now,
        )
        for i in range(n)
    ]


async def fill(store_url: str, rows: list[ConnectionRecord]) -> None:
    """Bulk insert through each backend's own row format (adding 10,000 one by one through
    ``add_connection`` costs an fsync each on sqlite, which is not what is measured here)."""
    store = open_store(store_url)
    await store.open()
    try:
        if isinstance(store, RedisStore):
            pipe = store._client.pipeline(transaction=False)
            for r in rows:
                pipe.hset(store._key("conn", r.app_id), mapping=connection_fields(r))
                pipe.zadd(store._key("conns"), {r.app_id: 0})
                pipe.zadd(store._key("vconns", r.vendor), {r.app_id: 0})
                pipe.sadd(store._key("dconns", r.district), r.app_id)
            await pipe.execute()
        else:
            path = store_url.removeprefix("sqlite://")
            with sqlite3.connect(path) as db:
                db.executemany(
                    f"INSERT INTO connections ({_C_COLUMNS}) VALUES ({','.join('?' * 11)})",
                    [_connection_row(r) for r in rows],
                )
    finally:
        await store.close()


async def reads_per_appid(config_path: Path, served: int) -> dict[str, float]:
    config = config_mod.load(str(config_path))
    running = await start(
        config,
        gateway_sock=bind_socket(config_mod.Listen("127.0.0.1", 0)),
        admin_sock=bind_socket(config_mod.Listen("127.0.0.1", 0)),
    )
    try:
        services = running.gateway[SERVICES]
        token = (await issue(services.store, "acme", ttl=None, interface="cli")).token
        base = f"http://127.0.0.1:{running.gateway_port}"
        headers = {"Authorization": f"Bearer {token}"}
        resolver = services.store_connections
        out: dict[str, float] = {}
        async with aiohttp.ClientSession() as http:
            for label in ("uncached", "cached"):
                before = resolver.reads
                times = []
                for i in range(0, served):
                    url = f"{base}/app-{i * 7 % 10000:05d}/ims/oneroster/v1p1/orgs?limit=1"
                    started = time.perf_counter()
                    async with http.get(url, headers=headers) as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status
                    times.append(time.perf_counter() - started)
                out[f"reads per appId, {label}"] = (resolver.reads - before) / served
                out[f"p50 ms, {label}"] = statistics.median(times) * 1000
        return out
    finally:
        await running.stop(1.0)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def serve_rss(
    tmp: Path, store_url: str, key: str, sandbox: Any, served: int
) -> tuple[float, float]:
    """RSS of a ready ``serve``, then after serving ``served`` appIds."""
    gateway, admin = free_port(), free_port()
    path = tmp / f"serve-{gateway}.toml"
    path.write_text(toml(store_url, key, sandbox, gateway, admin))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (tmp / f"serve-{gateway}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--config", str(path), stdout=log, stderr=log, env=env, cwd=ROOT
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{admin}/readyz") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            ready = rss_mb(proc.pid)
            if served == 0:
                return ready, ready
            async with http.post(
                f"http://127.0.0.1:{admin}/admin/vendors/acme/tokens",
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as resp:
                token = (await resp.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            for i in range(served):
                url = f"http://127.0.0.1:{gateway}/app-{i:05d}/ims/oneroster/v1p1/orgs?limit=1"
                async with http.get(url, headers=headers) as resp:
                    await resp.read()
            return ready, rss_mb(proc.pid)
    finally:
        proc.terminate()
        await proc.wait()
        log.close()


def list_all(config_path: Path) -> tuple[float, float, int]:
    """``connections list --json``: seconds, the CLI's peak RSS (MB), connections printed.
    Run in a thread: it waits for its process. The peak is the process's own ``VmHWM``,
    sampled while it runs (``wait4``'s ``ru_maxrss`` would count the bench's own memory,
    which the child holds between fork and exec)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    listing = config_path.with_suffix(".json")
    peak = 0
    started = time.monotonic()
    with listing.open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "connections", "list", "--json", "--config", str(config_path)],
            stdout=out,
            env=env,
            cwd=ROOT,
        )
        while proc.poll() is None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak = max(peak, int(status.split("VmHWM:")[1].split()[0]))
            time.sleep(0.01)
    elapsed = time.monotonic() - started
    return elapsed, peak / 1024, listing.read_bytes().count(b'"appId"')


def start_redis(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


async def backend(name: str, n: int, served: int, tmp: Path, sandbox: Any) -> dict[str, Any]:
    key = new_key()
    box = SecretBox([parse_key(key)])
    redis_proc = None
    if name == "redis":
        port = free_port()
        redis_proc = await asyncio.to_thread(start_redis, port)
        await asyncio.sleep(0.5)
        url, empty_url = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
    else:
        url, empty_url = f"sqlite://{tmp}/full.db", f"sqlite://{tmp}/empty.db"
    try:
        for u in (url, empty_url):  # create the schema
            store = open_store(u)
            await store.open()
            await store.close()
        started = time.monotonic()
        await fill(url, records(n, box, sandbox))
        filled = time.monotonic() - started
        config_path = tmp / f"{name}.toml"
        config_path.write_text(toml(url, key, sandbox))
        figures: dict[str, Any] = {"fill s (bulk)": filled}
        figures.update(await reads_per_appid(config_path, served))
        figures["serve RSS MB, empty store"] = (await serve_rss(tmp, empty_url, key, sandbox, 0))[0]
        ready, after = await serve_rss(tmp, url, key, sandbox, served)
        figures[f"serve RSS MB, {n} in store"] = ready
        figures[f"serve RSS MB, after serving {served}"] = after
        seconds, peak, count = await asyncio.to_thread(list_all, config_path)
        figures[f"list --json s ({count} printed)"] = seconds
        figures["list --json peak RSS MB"] = peak
        return figures
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            await asyncio.to_thread(redis_proc.wait)


async def amain(args: argparse.Namespace) -> int:
    sandbox = await start_sandbox(SandboxOptions())
    try:
        with tempfile.TemporaryDirectory(prefix="orp-bench-store-") as tmp:
            results = {}
            for name in args.only.split(","):
                results[name] = await backend(
                    name, args.connections, args.served, Path(tmp), sandbox
                )
    finally:
        await sandbox.close()
    names = list(results)
    rows = list(results[names[0]])
    width = max(len(r) for r in rows)
    print(f"{'':{width}}  " + "  ".join(f"{n:>10}" for n in names))
    for row in rows:
        cells = "  ".join(f"{results[n][row]:>10.2f}" for n in names)
        print(f"{row:{width}}  {cells}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--served", type=int, default=500)
    parser.add_argument("--only", default="sqlite,redis")
    return asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
