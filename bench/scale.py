"""Scale figures (bench/README.md "Scale"): workers, replicas on one Redis, a 5,000-connection
config, 100,000 tokens in the store.

    python bench/scale.py [--duration 5] [--connections 32] [--upstream nginx|sandbox]
                          [--only workers,replicas,connections,tokens]

What each part measures, every process on this machine's loopback:

(a) ``serve --workers 2`` against ``--workers 1`` (sqlite store): requests/s, p50, p99 from
    ``wrk`` on a small users page, and the RSS of all the processes.
(b) two proxy processes (replicas, each its own port) on one ``redis-server`` against one:
    one ``wrk`` per replica at the same time, req/s summed.
(c) a config with 5,000 connections (100 vendors, 50 districts) against one with 2: time from
    ``serve`` to ``/readyz`` 200, RSS once ready, and req/s / p50 / p99 of the same request.
(d) 100,000 tokens in the store against 100: the store's own ``get_token`` (what a cache miss
    costs; p50/p99 over 2,000 random ids), the gateway's req/s / p99, and the time of one
    ``/metrics`` scrape (it counts active tokens in the store), for sqlite and Redis.

The upstream is nginx serving a static page by default, so the district is never what limits
the figures; ``--upstream sandbox`` puts the sandbox district (Python, verifying every OAuth1
signature) there instead. Auth, scope check, signing, metrics and the access log are on in
every proxy. Figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CLI, issue_token, parse_wrk, workdir  # noqa: E402  (helpers of bench/run.py)

USERS = "/ims/oneroster/v1p1/users?limit=5"
SCOPES = ["roster.readonly", "roster-core.readonly"]


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    """Every process a run starts; all of them end with it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], log: str, **kw: Any) -> subprocess.Popen[bytes]:
        out = (self.tmp / log).open("ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            **kw,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def wait_ready(
    admin_port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 120
) -> float:
    """Seconds until ``/readyz`` answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f}s")


def rss_mb(pid: int) -> float:
    """VmRSS of pid and all its descendants."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
    return total / 1024


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes and their descendants: unlike req/s, barely
    moved by whatever else the machine is doing."""
    ticks = 0
    for pid in (p for root in pids for p in _tree(root)):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the upstream -----------------------------------------------------------------------------


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/upstream.pid;
error_log {tmp}/upstream.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
    uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /ims/oneroster/v1p1/users {{
            alias {tmp}/users.json;
            add_header X-Total-Count 1000;
        }}
    }}
}}
"""


@dataclass
class Upstream:
    base_url: str
    key: str
    secret: str


def start_upstream(procs: Procs, kind: str) -> Upstream:
    port = free_port()
    if kind == "nginx":
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        users = {
            "users": [
                {
                    "sourcedId": f"u{i}",
                    "status": "active",
                    "givenName": f"Given{i}",
                    "familyName": f"Family{i}",
                    "role": "student",
                    "email": f"u{i}@example.org",
                }
                for i in range(5)
            ]
        }
        (procs.tmp / "users.json").write_text(json.dumps(users))
        # Run as root, nginx serves from an unprivileged worker: it must read the page.
        os.chmod(procs.tmp, 0o755)
        os.chmod(procs.tmp / "users.json", 0o644)
        conf = procs.tmp / "upstream.conf"
        conf.write_text(NGINX_CONF.format(tmp=procs.tmp, port=port))
        proc = procs.spawn([nginx, "-p", str(procs.tmp), "-c", str(conf)], "upstream.log")
        _wait_port(port, proc)
        return Upstream(f"http://127.0.0.1:{port}", "bench-key", "bench+secret/odd=chars~&")
    proc = procs.spawn([*CLI, "sandbox", "--port", str(port)], "sandbox.log")
    _wait_port(port, proc)
    text = ""
    deadline = time.monotonic() + 30
    while "secret:" not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = (procs.tmp / "sandbox.log").read_text()
    fields = dict(re.findall(r"^(\w+): (\S+)$", text, re.M))
    return Upstream(fields["base_url"], fields["key"], fields["secret"])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"upstream exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("upstream did not listen")


# -- proxies ----------------------------------------------------------------------------------


@dataclass
class Proxy:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    config: Path
    startup_s: float

    def url(self, app: str = "app-0") -> str:
        return f"http://127.0.0.1:{self.port}/{app}{USERS}"


def write_config(
    path: Path,
    upstream: Upstream,
    store_url: str,
    *,
    connections: int = 2,
    vendors: int = 1,
    districts: int = 1,
) -> Path:
    port, admin = free_port(), free_port()
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        'drain_timeout = "2s"',
        "",
        "[admin]",
        f'listen = "127.0.0.1:{admin}"',
        'token = "bench-admin-token-0123456789"',
        "",
        "[store]",
        f'url = "{store_url}"',
        'cache_ttl = "2s"',
        "",
    ]
    for v in range(vendors):
        lines += [f"[vendors.v{v}]", ""]
    for d in range(districts):
        lines += [f"[districts.d{d}]", f'base_url = "{upstream.base_url}"', ""]
    scopes = ", ".join(json.dumps(s) for s in SCOPES)
    for c in range(connections):
        lines += [
            f"[connections.app-{c}]",
            f'vendor = "v{c % vendors}"',
            f'district = "d{c % districts}"',
            f"key = {json.dumps(upstream.key)}",
            f"secret = {json.dumps(upstream.secret)}",
            f"scopes = [{scopes}]",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def ports_of(config: Path) -> tuple[int, int]:
    import tomllib

    doc = tomllib.loads(config.read_text())
    return (
        int(doc["server"]["listen"].rpartition(":")[2]),
        int(doc["admin"]["listen"].rpartition(":")[2]),
    )


def start_proxy(procs: Procs, config: Path, workers: int = 1) -> Proxy:
    port, admin = ports_of(config)
    argv = [*CLI, "serve", "--config", str(config)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    proc = procs.spawn(argv, f"proxy-{config.stem}.log")
    startup = wait_ready(admin, proc, f"proxy {config.name}")
    return Proxy(proc, port, admin, config, startup)


# -- load -------------------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us_per_req: float = 0.0


def wrk_argv(url: str, token: str, duration: float, connections: int) -> list[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    return [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]


def load(
    targets: list[tuple[str, str]], duration: float, connections: int, pids: list[int]
) -> Load:
    """One wrk per (url, token), all at once; req/s summed, the worst p50/p99, and the CPU
    time ``pids`` (and their children) spent per request."""
    for url, token in targets:  # warm up: token cache, upstream keep-alive, signer
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{url}: {resp.status}")
    cpu_before = cpu_seconds(pids)
    runs = [
        subprocess.Popen(
            wrk_argv(url, token, duration, connections),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url, token in targets
    ]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=duration + 60)
        if run.returncode != 0:
            raise RuntimeError(f"wrk failed: {err or out}")
        results.append(parse_wrk(out))
    cpu = cpu_seconds(pids) - cpu_before
    requests = sum(r.requests for r in results)
    return Load(
        sum(r.rps for r in results),
        max(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
        sum(r.errors for r in results),
        requests,
        cpu / max(1, requests) * 1e6,
    )


# -- the parts --------------------------------------------------------------------------------


@dataclass
class Row:
    part: str
    case: str
    figures: dict[str, str]


def part_workers(procs: Procs, upstream: Upstream, args: argparse.Namespace) -> list[Row]:
    rows = []
    base = None
    for workers in (1, 2):
        tmp = procs.tmp / f"workers{workers}"
        tmp.mkdir()
        config = write_config(tmp / f"w{workers}.toml", upstream, f"sqlite://{tmp}/store.db")
        token = issue_token(config, "v0")
        proxy = start_proxy(procs, config, workers)
        result = load([(proxy.url(), token)], args.duration, args.connections, [proxy.proc.pid])
        rss = rss_mb(proxy.proc.pid)
        procs.stop(proxy.proc)
        base = base or result.rps
        rows.append(
            Row(
                "a workers",
                f"--workers {workers}",
                {
                    "req/s": f"{result.rps:,.0f}",
                    "x": f"{result.rps / base:.2f}",
                    "p50 ms": f"{result.p50_ms:.2f}",
                    "p99 ms": f"{result.p99_ms:.2f}",
                    "CPU µs/req": f"{result.cpu_us_per_req:.0f}",
                    "errors": str(result.errors),
                    "RSS MB": f"{rss:.0f}",
                    "ready s": f"{proxy.startup_s:.2f}",
                },
            )
        )
    return rows


def part_replicas(procs: Procs, upstream: Upstream, args: argparse.Namespace) -> list[Row]:
    from tests.redis_server import RedisServer

    rows = []
    with RedisServer() as redis:
        base = None
        for replicas in (1, 2):
            tmp = procs.tmp / f"replicas{replicas}"
            tmp.mkdir()
            configs = [
                write_config(tmp / f"r{i}.toml", upstream, redis.url) for i in range(replicas)
            ]
            token = issue_token(configs[0], "v0")  # one store: the token works on every replica
            proxies = [start_proxy(procs, c) for c in configs]
            per = max(1, args.connections // replicas)
            result = load(
                [(p.url(), token) for p in proxies],
                args.duration,
                per,
                [p.proc.pid for p in proxies],
            )
            for p in proxies:
                procs.stop(p.proc)
            base = base or result.rps
            rows.append(
                Row(
                    "b replicas",
                    f"{replicas} on one redis",
                    {
                        "req/s": f"{result.rps:,.0f}",
                        "x": f"{result.rps / base:.2f}",
                        "p50 ms": f"{result.p50_ms:.2f}",
                        "p99 ms": f"{result.p99_ms:.2f}",
                        "CPU µs/req": f"{result.cpu_us_per_req:.0f}",
                        "errors": str(result.errors),
                    },
                )
            )
    return rows


def part_connections(procs: Procs, upstream: Upstream, args: argparse.Namespace) -> list[Row]:
    rows = []
    for count, vendors, districts in ((2, 1, 1), (args.config_connections, 100, 50)):
        tmp = procs.tmp / f"conns{count}"
        tmp.mkdir()
        config = write_config(
            tmp / f"c{count}.toml",
            upstream,
            f"sqlite://{tmp}/store.db",
            connections=count,
            vendors=vendors,
            districts=districts,
        )
        started = time.monotonic()
        subprocess.run(
            [*CLI, "config", "validate", str(config)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        validate_s = time.monotonic() - started
        token = issue_token(config, "v0")
        proxy = start_proxy(procs, config)
        rss_ready = rss_mb(proxy.proc.pid)
        result = load(
            [(proxy.url("app-0"), token)], args.duration, args.connections, [proxy.proc.pid]
        )
        procs.stop(proxy.proc)
        rows.append(
            Row(
                "c connections",
                f"{count:,} connections",
                {
                    "ready s": f"{proxy.startup_s:.2f}",
                    "validate s": f"{validate_s:.2f}",
                    "RSS MB": f"{rss_ready:.0f}",
                    "req/s": f"{result.rps:,.0f}",
                    "p50 ms": f"{result.p50_ms:.2f}",
                    "p99 ms": f"{result.p99_ms:.2f}",
                    "CPU µs/req": f"{result.cpu_us_per_req:.0f}",
                    "errors": str(result.errors),
                },
            )
        )
    return rows


async def _fill_and_time(store_url: str, count: int, samples: int) -> tuple[float, float, float]:
    """Insert ``count`` tokens; then (fill seconds, p50 µs, p99 µs) of ``get_token``."""
    from proxy import tokens
    from proxy.store import open_store

    issued = [tokens.new_token(f"v{i % 100}").record for i in range(count)]
    started = time.monotonic()
    if store_url.startswith("sqlite://"):
        # One transaction for all rows, in the store's own row format: through add_token each
        # row is a commit of its own, which makes 100,000 of them minutes of set-up.
        import sqlite3

        from proxy.store.sqlite_tokens import _TOKEN_COLUMNS, _token_row

        store = open_store(store_url)
        await store.open()  # creates the schema
        await store.close()
        with contextlib.closing(sqlite3.connect(store_url[len("sqlite://") :])) as db, db:
            db.executemany(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                [_token_row(r) for r in issued],
            )
    else:
        store = open_store(store_url)
        await store.open()
        try:
            batch = 64  # concurrent inserts, within the redis client's connection pool
            for start in range(0, count, batch):
                await asyncio.gather(*(store.add_token(r) for r in issued[start : start + batch]))
        finally:
            await store.close()
    fill = time.monotonic() - started
    store = open_store(store_url)
    await store.open()
    try:
        picks = [random.choice(issued).id for _ in range(samples)]
        for token_id in picks[:100]:  # warm the connection and the page cache
            await store.get_token(token_id)
        times = []
        for token_id in picks:
            t0 = time.perf_counter()
            record = await store.get_token(token_id)
            times.append(time.perf_counter() - t0)
            assert record is not None
        times.sort()
        return fill, statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6
    finally:
        await store.close()


def _scrape_ms(admin_port: int, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=30) as r:
            r.read()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def part_tokens(procs: Procs, upstream: Upstream, args: argparse.Namespace) -> list[Row]:
    from tests.redis_server import RedisServer

    rows = []
    with RedisServer() as redis:
        for backend in ("sqlite", "redis"):
            for count in (100, args.tokens):
                tmp = procs.tmp / f"tokens-{backend}-{count}"
                tmp.mkdir()
                if backend == "sqlite":
                    url = f"sqlite://{tmp}/store.db"
                else:
                    url = redis.url.rpartition("/")[0] + f"/{1 if count == 100 else 2}"
                fill, p50, p99 = asyncio.run(_fill_and_time(url, count, 2000))
                config = write_config(tmp / "t.toml", upstream, url, connections=2, vendors=100)
                token = issue_token(config, "v0")
                proxy = start_proxy(procs, config)
                scrape = _scrape_ms(proxy.admin_port)
                result = load(
                    [(proxy.url(), token)], args.duration, args.connections, [proxy.proc.pid]
                )
                procs.stop(proxy.proc)
                rows.append(
                    Row(
                        "d tokens",
                        f"{backend}, {count:,} tokens",
                        {
                            "get_token p50 µs": f"{p50:.0f}",
                            "get_token p99 µs": f"{p99:.0f}",
                            "req/s": f"{result.rps:,.0f}",
                            "p99 ms": f"{result.p99_ms:.2f}",
                            "CPU µs/req": f"{result.cpu_us_per_req:.0f}",
                            "/metrics ms": f"{scrape:.1f}",
                            "fill s": f"{fill:.1f}",
                            "errors": str(result.errors),
                        },
                    )
                )
    return rows


PARTS = {
    "workers": part_workers,
    "replicas": part_replicas,
    "connections": part_connections,
    "tokens": part_tokens,
}


def table(rows: list[Row]) -> str:
    out = []
    for part in dict.fromkeys(r.part for r in rows):
        group = [r for r in rows if r.part == part]
        columns = list(dict.fromkeys(k for r in group for k in r.figures))
        header = ["case", *columns]
        cells = [[r.case, *(r.figures.get(c, "") for c in columns)] for r in group]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        out.append(f"({part})")
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in cells:
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--upstream", choices=("nginx", "sandbox"), default="nginx")
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--config-connections", type=int, default=5_000)
    parser.add_argument(
        "--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS)
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")
    print(
        f"oneroster-proxy scale bench: {os.cpu_count()} CPUs, upstream {args.upstream}, "
        f"wrk {args.duration:.0f}s x {args.connections} connections",
        flush=True,
    )
    rows: list[Row] = []
    # SIGTERM ends the run through the finally blocks below, which stop every process it began.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with workdir(args.keep) as tmp:
        procs = Procs(tmp)
        try:
            upstream = start_upstream(procs, args.upstream)
            for part in parts:
                print(f"running {part} ...", flush=True)
                rows += PARTS[part](procs, upstream, args)
        finally:
            procs.close()
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
