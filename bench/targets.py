"""The hot-path targets in one command: the proxy against a bare aiohttp forwarder, side by side.

    python bench/targets.py [--rounds 3] [--duration 10] [--warmup 2] [--connections 50]
                            [--slow-duration 30] [--quick]
                            [--only small,big,sharing,rss,rate,slow,workers]
                            [--no-pin] [--keep]

The scenario: the district is nginx serving static JSON files over keep-alive (a 2,381-byte
users page and a 951,011-byte page, both with Content-Length); the request is ``GET
/<appId>/ims/oneroster/rostering/v1p2/users?limit=100`` with an opaque vendor token, to an
OAuth1 HMAC-SHA256 district, sqlite store, metrics and the JSON access log on (to a file).
Load is ``wrk -t1 -c50 -d10s --latency`` after a 2 s warm-up; the target is pinned to CPU 1,
wrk and the districts to CPU 0. Every measured run is one *item*; each round runs every item
once, in an order that changes from round to round (rotated, every other round reversed), so
no target always follows the same one. Figures are medians over the rounds, with min-max.

Targets of one run, each printed PASS or MISS, never asserted (they depend on the machine):

1. small page: proxy >= 0.85x the req/s of ``bare`` (``bare_forwarder.py --chunked``: one
   shared ClientSession, a static Authorization, ``iter_chunked(256 KiB)`` into a
   StreamResponse, no one-write shortcut), p99 <= 1.3x; ``bare-uvloop`` (the same on uvloop)
   and nginx ``proxy_pass`` beside them, and >= 0.85x of ``bare-uvloop`` when the proxy runs on
   uvloop, so the loop is not the whole gain;
2. 1 MB page >= 0.95x bare; RSS growth <= 16 MiB while a 300 MB page streams to a slow reader;
3. at 100 requests a second (``rate_client.py``, open loop) the proxy adds <= 0.3 ms to the
   median and <= 1 ms to the p99 of calling the district directly;
4. a slow district (``slow_district.py``, 500 ms per answer, ``max_connections = 400``) under
   400 concurrent requests: proxy >= 0.97x the req/s of calling it directly, p99 <= direct + 50
   ms. Measured over ``--slow-duration`` (30 s, 60 answers per connection): each wrk run opens
   its 400 connections at once, and in a 10 s run that first answer is 1/20 of what is counted;
   ``--slow-duration 10`` shows it;
5. ``serve --workers 2`` (on both CPUs) >= 1.7x one worker on the small page;
6. the sharing policy (defaults: ``users.password`` dropped, the ledger on): the small page
   >= 0.90x of ``bare``, and 1 MB of OneRoster 1.1 users (each with a password, dropped as
   it streams) >= 0.60x of the same proxy on the same bytes sent as
   ``application/octet-stream`` (not scanned: the proxy with the scanner off).

``--quick`` is a smoke run (2 rounds of 3 s, a 32 MB stream), about two minutes; the default
takes about twelve. Nothing in the test suite runs this. JSON lands in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as rb  # the process, wrk and RSS helpers of bench/run.py
from targets_report import report

BENCH, ROOT = rb.BENCH, rb.ROOT
APP, SLOW_APP = "app-bench", "app-slow"
SMALL = "/ims/oneroster/rostering/v1p2/users?limit=100"
BIG = "/ims/oneroster/rostering/v1p2/classes?limit=1000"
# The sharing policy (--only sharing): 1 MB of 1.1 users with passwords, scanned and filtered;
# the same bytes sent as octet-stream, which the proxy passes without scanning.
USERS_1MB = "/ims/oneroster/v1p1/users?limit=1000"
USERS_1MB_OFF = "/ims/oneroster/v1p1/students?limit=1000"
STREAM = "/ims/oneroster/rostering/v1p2/enrollments"
SMALL_BYTES, BIG_BYTES = 2_381, 951_011
CLI = rb.CLI


def sized_page(wrapper: str, records: int, size: int, padding: int = 0) -> bytes:
    """A page of ``records`` users, padded in its last record to exactly ``size`` bytes."""
    rows = [rb.user_record(i, padding) for i in range(records)]
    rows[-1]["metadata"] = {"padding": ""}
    short = size - len(rb.page(rows, wrapper))
    if short < 0:
        raise ValueError(f"{records} records are over {size} bytes")
    rows[-1]["metadata"]["padding"] = "x" * short
    body = rb.page(rows, wrapper)
    assert len(body) == size
    return body


def users_1mb_page() -> bytes:
    """About 1 MB of OneRoster 1.1 users, each with a ``password`` (the default policy drops it)."""
    rows = [dict(rb.user_record(i, padding=60), password=f"pw-{i:06d}") for i in range(1700)]
    return rb.page(rows, "users")


def small_page() -> bytes:
    return sized_page("users", 4, SMALL_BYTES)


def big_page() -> bytes:
    return sized_page("classes", 1300, BIG_BYTES, padding=200)


# ---------------------------------------------------------------------------------------------
# Processes


def small_docroot(tmp: Path) -> Path:
    """The district's pages for small-page runs only (bench/breakdown.py, bench/icount.py):
    the 100-user page and empty ``classes`` / ``enrollments`` (not fetched, but served)."""
    docroot = tmp / "docroot"
    docroot.mkdir(mode=0o755)
    (docroot / "users.json").write_bytes(small_page())
    for name in ("classes.json", "enrollments.json"):
        (docroot / name).write_bytes(b"{}")
    return docroot


def pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus is not None else []


@dataclasses.dataclass
class Node:
    """One target: where it listens, the path prefix and headers a request needs, and the
    processes whose CPU time it spends."""

    name: str
    port: int
    pids: Callable[[], list[int]]
    prefix: str = f"/{APP}"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += rb.children(p)
    return out


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += rb.cpu_seconds(pid)
        except OSError:
            pass
    return total


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        pinned = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
        self.load_cpu, self.target_cpu = ("0", "1") if pinned else (None, None)
        self.all_cpus = "0,1" if pinned else None
        self.stack = rb.Stack(tmp, None, None)
        # A max_connections line for the fast district (bench/icount.py --max-connections).
        self.district_cap = ""
        self.nginx = rb.ensure_nginx()
        self.wrk = rb.ensure_wrk()

    def spawn(self, argv: list[str], log: str, cpus: str | None) -> subprocess.Popen[bytes]:
        return self.stack.spawn(pin(cpus) + argv, log, None)

    def start_district(self, docroot: Path) -> int:
        port = rb.free_port()
        link = (
            f"<http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2/users?limit=100&offset=100>;"
            f' rel="next", <http://127.0.0.1:{port}/ims/oneroster/rostering/v1p2/users?'
            'limit=100&offset=1900>; rel="last"'
        )
        conf = rb.render(
            BENCH / "district.nginx.conf.template",
            self.tmp / "district.conf",
            PREFIX=str(self.tmp),
            PORT=str(port),
            DOCROOT=str(docroot),
            LINK=link,
        )
        proc = self.spawn(
            [self.nginx, "-p", str(self.tmp), "-c", str(conf)], "district.out", self.load_cpu
        )
        rb.wait_port(port, proc, "district nginx")
        return port

    def start_slow(self, docroot: Path) -> int:
        port = rb.free_port()
        argv = [sys.executable, str(BENCH / "slow_district.py"), "--port", str(port)]
        proc = self.spawn([*argv, "--page", str(docroot / "users.json")], "slow.log", self.load_cpu)
        rb.wait_port(port, proc, "slow district")
        return port

    def start_proxy(
        self, name: str, district: int, slow: int, workers: int, cpus: str | None
    ) -> Node:
        port, admin = rb.free_port(), rb.free_port()
        scopes = ", ".join(json.dumps(s) for s in rb.ALL_SCOPES)
        config = self.tmp / f"{name}.toml"
        config.write_text(f"""\
[server]
listen = "127.0.0.1:{port}"
upstream_timeout = "30s"

[admin]
listen = "127.0.0.1:{admin}"
token = "bench-admin-token-0123456789"

[store]
url = "sqlite://{self.tmp}/{name}.db"

[vendors.acme]

[districts.springfield]
base_url = "http://127.0.0.1:{district}"
auth = "oauth1"
signature_method = "HMAC-SHA256"
{self.district_cap}
[districts.slowville]
base_url = "http://127.0.0.1:{slow}"
auth = "oauth1"
signature_method = "HMAC-SHA256"
max_connections = 400

[connections.{APP}]
vendor = "acme"
district = "springfield"
key = "bench-key"
secret = "bench+secret/with=odd~chars&"
scopes = [{scopes}]

[connections.{SLOW_APP}]
vendor = "acme"
district = "slowville"
key = "bench-key"
secret = "bench+secret/with=odd~chars&"
scopes = [{scopes}]
""")
        token = rb.issue_token(config)
        argv = [*CLI, "serve", "--config", str(config)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        # The JSON access log goes to a file with everything else the proxy writes.
        proc = self.spawn(argv, f"{name}.log", cpus)
        rb.wait_port(port, proc, name)
        node = Node(
            name, port, lambda: tree(proc.pid), headers={"Authorization": f"Bearer {token}"}
        )
        deadline = time.monotonic() + 60
        while rb.fetch(self.url(node, SMALL), node.headers)[0] != 200:  # workers come up late
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} does not answer 200")
            time.sleep(0.2)
        return node

    def start_bare(self, name: str, district: int, uvloop: bool) -> Node:
        port = rb.free_port()
        argv = [
            sys.executable,
            str(BENCH / "bare_forwarder.py"),
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{district}",
            "--chunked",
            "--authorization",
            'OAuth oauth_consumer_key="bench-key", oauth_signature="static"',
        ]
        if uvloop:
            argv.append("--uvloop")
        proc = self.spawn(argv, f"{name}.log", self.target_cpu)
        rb.wait_port(port, proc, name)
        return Node(name, port, lambda: [proc.pid])

    def start_nginx(self, district: int) -> Node:
        port = rb.free_port()
        conf = rb.render(
            BENCH / "nginx.conf.template",
            self.tmp / "nginx-target.conf",
            PREFIX=str(self.tmp),
            PORT=str(port),
            UPSTREAM_PORT=str(district),
            APP_ID=APP,
        )
        cmd = [self.nginx, "-p", str(self.tmp), "-c", str(conf)]
        proc = self.spawn(cmd, "nginx-target.out", self.target_cpu)
        rb.wait_port(port, proc, "nginx proxy_pass")
        return Node("nginx", port, lambda: rb.children(proc.pid))

    @staticmethod
    def url(node: Node, path: str) -> str:
        return f"http://127.0.0.1:{node.port}{node.prefix}{path}"

    # -- measurements ---------------------------------------------------------------------

    def load(
        self, node: Node, path: str, connections: int, duration: int | None = None
    ) -> dict[str, float]:
        url = self.url(node, path)
        args = self.args
        if args.warmup > 0:
            rb.run_wrk(
                self.wrk,
                url,
                node.headers,
                duration=args.warmup,
                connections=connections,
                cpu=self.load_cpu,
            )  # type: ignore[arg-type]
        pids = node.pids()
        before = cpu_of(pids)
        load = rb.run_wrk(
            self.wrk,
            url,
            node.headers,
            duration=duration or args.duration,
            connections=connections,
            cpu=self.load_cpu,
        )  # type: ignore[arg-type]
        cpu = cpu_of(pids) - before
        return {
            "rps": load.rps,
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "errors": load.errors,
            "cpu_us": cpu / max(1, load.requests) * 1e6,
        }

    def rate(self, node: Node, path: str) -> dict[str, float]:
        argv = [sys.executable, str(BENCH / "rate_client.py"), "--port", str(node.port)]
        argv += ["--path", node.prefix + path, "--rate", str(self.args.rate)]
        argv += ["--duration", str(self.args.rate_duration)]
        for name, value in node.headers.items():
            argv += ["--header", f"{name}: {value}"]
        done = subprocess.run(
            pin(self.load_cpu) + argv,
            capture_output=True,
            text=True,
            timeout=self.args.rate_duration + 60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rate client failed: {done.stderr.strip()}")
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def stream(self, node: Node, size: int) -> dict[str, float]:
        pid = node.pids()[0]
        rb.fetch(self.url(node, SMALL), node.headers)
        time.sleep(0.3)
        idle = rb.rss_kb(pid) / 1024
        with rb.RssSampler(pid) as sampler:
            status, received, seconds = rb.slow_read(
                node.port, node.prefix + STREAM, node.headers, self.args.stream_rate
            )
        peak = sampler.peak_kb / 1024
        return {
            "ok": float(status == 200 and received == size),
            "idle_mb": idle,
            "peak_mb": peak,
            "growth_mib": peak - idle,
            "seconds": seconds,
        }


# ---------------------------------------------------------------------------------------------
# Rounds


def order(items: list[str], round_index: int) -> list[str]:
    """Round k: the items rotated by k, reversed every other round, so neighbours change."""
    shift = (round_index * 3) % len(items) if items else 0
    rotated = items[shift:] + items[:shift]
    return rotated[::-1] if round_index % 2 else rotated


def proxy_loop(log: Path) -> str:
    """The event loop the proxy reports in its ``listening`` line (``asyncio`` if it does not)."""
    for line in log.read_text(errors="replace").splitlines():
        if '"oneroster-proxy listening"' in line:
            return str(json.loads(line).get("loop", "asyncio"))
    return "asyncio"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.only.split(","))
    busy_before = rb.cpu_busy()
    if busy_before > 0.15:
        print(
            f"warning: the machine is {busy_before:.0%} busy before the run; figures are noisy",
            flush=True,
        )
    started = time.monotonic()
    small, big = small_page(), big_page()
    runs: dict[str, list[dict[str, float]]] = {}
    extra: dict[str, Any] = {}
    with rb.workdir(args.keep) as tmp:
        docroot = tmp / "docroot"
        docroot.mkdir(mode=0o755)
        (docroot / "users.json").write_bytes(small)
        (docroot / "classes.json").write_bytes(big)
        (docroot / "users-1mb.json").write_bytes(users_1mb_page())
        stream_size = rb.write_stream_page(docroot / "enrollments.json", args.stream_mb * 2**20)
        bench = Bench(args, tmp)
        try:
            district = bench.start_district(docroot)
            slow = bench.start_slow(docroot)
            proxy = bench.start_proxy("proxy", district, slow, 1, bench.target_cpu)
            nodes = {
                "proxy": proxy,
                "bare": bench.start_bare("bare", district, uvloop=False),
                "bare-uvloop": bench.start_bare("bare-uvloop", district, uvloop=True),
                "nginx": bench.start_nginx(district),
            }
            direct = Node("direct", district, lambda: [], prefix="")
            for node in nodes.values():
                for path, body in ((SMALL, small), (BIG, big)):
                    status, _, got = rb.fetch(bench.url(node, path), node.headers)
                    if status != 200 or got != body:
                        raise RuntimeError(f"{node.name}: {path} gave {status}, {len(got)} bytes")
            if f"/{APP}/ims/oneroster/" not in rb.fetch(bench.url(proxy, SMALL), proxy.headers)[
                1
            ].get("Link", ""):
                raise RuntimeError("proxy: Link not rewritten")
            if "sharing" in parts:
                # The policy really works on the page measured, and the baseline really is the
                # same bytes untouched.
                status, _, got = rb.fetch(bench.url(proxy, USERS_1MB), proxy.headers)
                if status != 200 or b'"password"' in got or not got.startswith(b'{"users":'):
                    raise RuntimeError(f"proxy: {USERS_1MB} gave {status}, passwords not dropped")
                status, _, got = rb.fetch(bench.url(proxy, USERS_1MB_OFF), proxy.headers)
                if status != 200 or got != users_1mb_page():
                    raise RuntimeError(f"proxy: {USERS_1MB_OFF} gave {status}, not the page")
            extra["proxy_loop"] = proxy_loop(tmp / "proxy.log")
            if "rss" in parts:
                for name in ("proxy", "bare"):
                    print(
                        f"{name}: streaming {stream_size / 2**20:.0f} MB to a slow reader",
                        flush=True,
                    )
                    extra[f"stream_{name}"] = bench.stream(nodes[name], stream_size)
            items: dict[str, Callable[[], dict[str, float]]] = {}
            for name, node in nodes.items():
                if "small" in parts:
                    items[f"small {name}"] = lambda n=node: bench.load(n, SMALL, args.connections)
                if "big" in parts:
                    items[f"big {name}"] = lambda n=node: bench.load(n, BIG, args.connections)
                if "sharing" in parts and name in ("proxy", "bare"):
                    items[f"users1mb {name}"] = lambda n=node: bench.load(
                        n, USERS_1MB, args.connections
                    )
            if "sharing" in parts:
                items["users1mb proxy scanner-off"] = lambda: bench.load(
                    proxy, USERS_1MB_OFF, args.connections
                )
            if "workers" in parts:
                w2 = bench.start_proxy("proxy-w2", district, slow, 2, bench.all_cpus)
                items["small proxy --workers 2"] = lambda: bench.load(w2, SMALL, args.connections)
                if "small" not in parts:
                    items["small proxy"] = lambda: bench.load(proxy, SMALL, args.connections)
            if "rate" in parts:
                items["rate direct"] = lambda: bench.rate(direct, SMALL)
                items["rate proxy"] = lambda: bench.rate(proxy, SMALL)
                # What a forwarder with none of the proxy's work adds: the floor for (3).
                items["rate bare"] = lambda: bench.rate(nodes["bare"], SMALL)
                items["rate bare-uvloop"] = lambda: bench.rate(nodes["bare-uvloop"], SMALL)
                # nginx proxy_pass on the same CPU: what the extra hop itself costs.
                items["rate nginx"] = lambda: bench.rate(nodes["nginx"], SMALL)
            if "slow" in parts:
                slow_direct = Node("slow-direct", slow, lambda: [], prefix="")
                slow_proxy = dataclasses.replace(proxy, prefix=f"/{SLOW_APP}")
                # The bare forwarder in front of the slow district: what any aiohttp forwarder
                # costs there (the floor for (4)).
                slow_bare = bench.start_bare("bare-slow", slow, uvloop=True)
                slow_s = args.slow_duration
                items["slow direct"] = lambda: bench.load(slow_direct, SMALL, 400, slow_s)
                items["slow proxy"] = lambda: bench.load(slow_proxy, SMALL, 400, slow_s)
                items["slow bare-uvloop"] = lambda: bench.load(slow_bare, SMALL, 400, slow_s)
            names = list(items)
            for r in range(args.rounds):
                for name in order(names, r):
                    print(f"round {r + 1}/{args.rounds}: {name}", flush=True)
                    runs.setdefault(name, []).append(items[name]())
        except BaseException:
            for log in ("proxy.log", "proxy-w2.log", "bare.log", "slow.log", "district.out"):
                tail = bench.stack.log_tail(log, 10)
                if tail:
                    print(f"--- {log} (tail)\n{tail}", file=sys.stderr)
            raise
        finally:
            bench.stack.close()
    busy_after = rb.cpu_busy()
    verdicts = report(args, runs, extra)
    print(
        f"{args.rounds} rounds, {args.duration} s per wrk run after {args.warmup} s warm-up, "
        f"{args.connections} connections; {time.monotonic() - started:.0f} s in all; machine busy "
        f"before/after: {busy_before:.0%}/{busy_after:.0%}; proxy loop: {extra['proxy_loop']}"
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = BENCH / "results" / f"targets-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": [
                    "python",
                    "bench/targets.py",
                    *(argv if argv is not None else sys.argv[1:]),
                ],
                "settings": vars(args),
                "machine_busy": [busy_before, busy_after],
                "runs": runs,
                "extra": extra,
                "targets": [{"target": t, "met": ok} for t, ok in verdicts],
            },
            indent=2,
        )
    )
    print(f"results: {out.relative_to(ROOT)}")
    streams_ok = all(v.get("ok", 1.0) == 1.0 for k, v in extra.items() if k.startswith("stream_"))
    return 0 if streams_ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load (2)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument(
        "--slow-duration",
        type=int,
        default=30,
        help="seconds per wrk run on the slow district (30: 60 answers per connection)",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="constant rate, req/s (100)")
    parser.add_argument("--rate-duration", type=float, default=10.0, help="seconds (10)")
    parser.add_argument("--stream-mb", type=int, default=300, help="the slow reader's page (300)")
    parser.add_argument("--stream-rate", type=float, default=64.0, help="its pace, MB/s (64)")
    parser.add_argument(
        "--only",
        default="small,big,sharing,rss,rate,slow,workers",
        help="a subset of the parts",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 2 rounds of 3 s, 32 MB stream"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.slow_duration = 2, 3, 1, 3
        args.rate_duration, args.stream_mb = 3.0, 32
    return args


def uvloop_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


if __name__ == "__main__":
    sys.exit(main())
