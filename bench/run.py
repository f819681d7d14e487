"""Side-by-side gateway benchmark: the proxy, a bare aiohttp forwarder and nginx proxy_pass.

In one run, on loopback, in front of one fixed upstream (nginx serving static
files: a small users page, a 1 MB page and a 300 MB page):

* ``proxy``: ``oneroster-proxy serve`` (one process) with auth, scope check, OAuth1
  HMAC-SHA256 signing, metrics and the JSON access log all on (the log goes to a file);
* ``bare``: ``bench/bare_forwarder.py``, an aiohttp pass-through with none of that, the ceiling
  of our stack;
* ``nginx``: nginx ``proxy_pass``, one worker, the C reference.

For each target: requests/s and latency p50/p99 from ``wrk --latency`` on the small page and on
the 1 MB page, and the peak RSS while a slow client reads the 300 MB page (VmRSS sampled every
50 ms), against the target's idle RSS. One table on stdout, JSON in ``bench/results/``.

    python bench/run.py [--duration 10] [--connections 32] [--quick]

On a machine with two or more cores, wrk and the upstream run on CPU 0 and the target on CPU 1
(``taskset``), so each target gets one core. The targets the issue sets are reported, never
asserted: proxy/bare small-page req/s >= 0.70 with p99 <= 1.5x; 1 MB page >= 0.90x; RSS growth
<= 16 MB over the stream.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# The proxy's CLI, run from ROOT so that ``proxy`` imports without installing.
CLI = [sys.executable, "-c", "from proxy.cli import main; main()"]

APP_ID = "app-bench"
SMALL_PATH = "/ims/oneroster/v1p1/users?limit=5"
BIG_PATH = "/ims/oneroster/v1p1/classes?limit=1000"
STREAM_PATH = "/ims/oneroster/v1p1/enrollments"
ALL_SCOPES = [
    "roster.readonly",
    "roster-core.readonly",
    "roster-demographics.readonly",
    "resource.readonly",
    "gradebook.readonly",
    "gradebook.createput",
    "gradebook.delete",
]
# The issue's targets for proxy / bare.
TARGET_SMALL_RPS = 0.70
TARGET_SMALL_P99 = 1.5
TARGET_BIG_RPS = 0.90
TARGET_RSS_GROWTH_MB = 16.0


# ---------------------------------------------------------------------------------------------
# Bodies the upstream serves


def user_record(i: int, padding: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = {
        "sourcedId": f"user-{i:09d}",
        "status": "active",
        "dateLastModified": "2025-09-01T00:00:00.000Z",
        "username": f"user{i}",
        "enabledUser": "true",
        "givenName": "Avery",
        "familyName": "Okafor-Lindqvist",
        "role": "student",
        "identifier": f"SIS{i:09d}",
        "email": f"user{i}@springfield.example",
        "sms": "",
        "phone": "",
        "agents": [],
        "grades": [f"{9 + i % 4:02d}"],
        "orgs": [
            {
                "href": "https://district.example/ims/oneroster/v1p1/orgs/school-3",
                "sourcedId": "school-3",
                "type": "org",
            }
        ],
    }
    if padding:
        record["metadata"] = {"padding": "x" * padding}
    return record


def page(records: list[dict[str, Any]], wrapper: str = "users") -> bytes:
    return json.dumps({wrapper: records}, separators=(",", ":")).encode()


def small_page() -> bytes:
    """~2 KB: five users, as a ``limit=5`` page."""
    return page([user_record(i, padding=40) for i in range(5)])


def big_page(size: int = 1 << 20) -> bytes:
    """About ``size`` bytes (a little over): a ``classes`` page of padded records."""
    one = len(json.dumps(user_record(0, padding=200), separators=(",", ":"))) + 1
    return page([user_record(i, padding=200) for i in range(size // one + 1)], "classes")


def write_stream_page(path: Path, size: int) -> int:
    """A users page of about ``size`` bytes, written a block of records at a time."""
    block_records = [
        json.dumps(user_record(i, padding=900), separators=(",", ":")).encode() for i in range(1000)
    ]
    written = 0
    with path.open("wb") as out:
        out.write(b'{"enrollments":[')
        written += 16
        first = True
        while written < size:
            block = b",".join(block_records)
            if not first:
                block = b"," + block
            first = False
            out.write(block)
            written += len(block)
        out.write(b"]}")
        written += 2
    return written


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def render(template: Path, out: Path, **values: str) -> Path:
    text = template.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    leftover = re.findall(r"@[A-Z_]{2,}@", text)
    if leftover:
        raise RuntimeError(f"{template.name}: unfilled placeholders {leftover}")
    out.write_text(text)
    return out


def python_tool(name: str) -> str | None:
    """A tool a pip package installs (``py-spy`` of the dev extra): beside the interpreter
    running the bench (``.venv/bin/``, often not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which(name)


def ensure_nginx() -> str:
    sbin = "/usr/sbin/nginx"  # not on PATH for every user
    found = shutil.which("nginx") or (sbin if Path(sbin).exists() else None)
    if found:
        return found
    print("nginx not found; installing it with apt-get", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "nginx-light"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise RuntimeError("nginx is still missing after apt-get install")
    return found


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found; installing it with apt-get", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


def cpu_busy(seconds: float = 1.0) -> float:
    """Share (0..1) of all CPUs busy over ``seconds``, from /proc/stat: a benchmark on a
    machine that is doing something else measures that too, so the run reports it."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    # nginx's master only forks; its one worker does the work and holds the memory.
    worker_pid: Callable[[], int] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/{APP_ID}"

    @property
    def pid(self) -> int:
        return self.worker_pid() if self.worker_pid else self.proc.pid


class Stack:
    """Every process of the run; all of them end with it."""

    def __init__(self, tmp: Path, target_cpu: int | None, load_cpu: int | None) -> None:
        self.tmp = tmp
        self.target_cpu = target_cpu
        self.load_cpu = load_cpu
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def spawn(
        self, argv: list[str], log_name: str, cpu: int | None, **kw: Any
    ) -> subprocess.Popen[bytes]:
        log = (self.tmp / log_name).open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            pin(cpu) + argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, **kw
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()

    def log_tail(self, log_name: str, lines: int = 20) -> str:
        path = self.tmp / log_name
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_upstream(stack: Stack, nginx: str, docroot: Path) -> int:
    port = free_port()
    link = (
        f'<http://127.0.0.1:{port}/ims/oneroster/v1p1/users?limit=5&offset=5>; rel="next", '
        f'<http://127.0.0.1:{port}/ims/oneroster/v1p1/users?limit=5&offset=995>; rel="last"'
    )
    conf = render(
        BENCH / "upstream.nginx.conf.template",
        stack.tmp / "upstream.conf",
        PREFIX=str(stack.tmp),
        PORT=str(port),
        DOCROOT=str(docroot),
        SMALL_LINK=link,
    )
    proc = stack.spawn(
        [nginx, "-p", str(stack.tmp), "-c", str(conf)], "upstream.out", stack.load_cpu
    )
    wait_port(port, proc, "upstream nginx")
    return port


def issue_token(config: Path, vendor: str = "acme") -> str:
    """A bearer token for ``vendor`` from ``tokens issue`` (its last output line)."""
    issued = subprocess.run(
        [*CLI, "tokens", "issue", vendor, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if issued.returncode != 0:
        raise RuntimeError(f"tokens issue failed: {issued.stderr.strip()}")
    return issued.stdout.strip().splitlines()[-1]


def start_proxy(stack: Stack, upstream_port: int) -> Target:
    port, admin_port = free_port(), free_port()
    scopes = ", ".join(json.dumps(s) for s in ALL_SCOPES)
    config = stack.tmp / "proxy.toml"
    # Everything on the hot path stays on: bearer auth (opaque token via the sqlite store and
    # its cache), scope check, OAuth1 HMAC-SHA256 signing, metrics and the access log.
    config.write_text(f"""\
[server]
listen = "127.0.0.1:{port}"
upstream_timeout = "30s"

[admin]
listen = "127.0.0.1:{admin_port}"
token = "bench-admin-token-0123456789"

[store]
url = "sqlite://{stack.tmp}/store.db"

[vendors.acme]

[districts.springfield]
base_url = "http://127.0.0.1:{upstream_port}"
auth = "oauth1"
signature_method = "HMAC-SHA256"

[connections.{APP_ID}]
vendor = "acme"
district = "springfield"
key = "bench-key"
secret = "bench+secret/with=odd~chars&"
scopes = [{scopes}]
""")
    token = issue_token(config)
    # The JSON access log (one line per request, through the normal logger) goes to a file.
    proc = stack.spawn([*CLI, "serve", "--config", str(config)], "proxy.log", stack.target_cpu)
    wait_port(port, proc, "proxy")
    return Target("proxy", port, proc, headers={"Authorization": f"Bearer {token}"})


def start_bare(stack: Stack, upstream_port: int) -> Target:
    port = free_port()
    proc = stack.spawn(
        [
            sys.executable,
            str(BENCH / "bare_forwarder.py"),
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
        ],
        "bare.log",
        stack.target_cpu,
    )
    wait_port(port, proc, "bare forwarder")
    return Target("bare", port, proc)


def start_nginx_target(stack: Stack, nginx: str, upstream_port: int) -> Target:
    port = free_port()
    conf = render(
        BENCH / "nginx.conf.template",
        stack.tmp / "nginx-target.conf",
        PREFIX=str(stack.tmp),
        PORT=str(port),
        UPSTREAM_PORT=str(upstream_port),
        APP_ID=APP_ID,
    )
    proc = stack.spawn(
        [nginx, "-p", str(stack.tmp), "-c", str(conf)], "nginx-target.out", stack.target_cpu
    )
    wait_port(port, proc, "nginx proxy_pass")
    master = proc.pid

    def worker() -> int:
        # taskset execs nginx, so proc.pid is the master; its one child is the worker.
        found = children(master)
        if not found:
            raise RuntimeError("nginx has no worker process")
        return found[0]

    return Target("nginx", port, proc, worker_pid=worker)


# ---------------------------------------------------------------------------------------------
# Measurements


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx answers
    transfer_mb_s: float
    # CPU time the target spent per request: unlike req/s, barely moved by other work on the
    # machine, and 1e6 / cpu_us_per_req is the req/s one fully busy core would give.
    cpu_us_per_req: float = 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _mb(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?B)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 2**20}[unit]


def parse_wrk(out: str) -> LoadResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out, re.M)
        if match is None:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{out}")
        return match

    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        out,
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return LoadResult(
        rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)").group(1)),
        requests=int(find(r"^\s+(\d+) requests in").group(1)),
        errors=errors,
        transfer_mb_s=_mb(find(r"^Transfer/sec:\s+(\S+)").group(1)),
    )


def run_wrk(
    wrk: str,
    url: str,
    headers: dict[str, str],
    *,
    duration: float,
    connections: int,
    cpu: int | None,
) -> LoadResult:
    argv = [
        *pin(cpu),
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


def fetch(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def check_target(target: Target, small: bytes, big: bytes) -> None:
    """Each target must answer the pages unchanged before its numbers mean anything (a proxy
    answering 401 fast would otherwise win)."""
    for path, expected in ((SMALL_PATH, small), (BIG_PATH, big)):
        status, headers, body = fetch(target.base + path, target.headers)
        if status != 200 or body != expected:
            raise RuntimeError(
                f"{target.name}: GET {path} gave {status} with {len(body)} bytes "
                f"(expected 200 with {len(expected)}): {body[:300]!r}"
            )
    if target.name == "proxy":
        status, headers, _ = fetch(target.base + SMALL_PATH, target.headers)
        link = headers.get("Link", "")
        if f"/{APP_ID}/ims/oneroster/" not in link or "X-Total-Count" not in headers:
            raise RuntimeError(f"proxy: Link not rewritten or X-Total-Count lost: {headers}")


class RssSampler:
    """Peak VmRSS of one process, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = rss_kb(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, RuntimeError):
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))


def slow_read(
    port: int, path: str, headers: dict[str, str], rate_mb_s: float, recv_size: int = 16 * 1024
) -> tuple[int, int, float]:
    """GET ``path`` and read the body as a slow client would: a small receive buffer, small
    reads, paced at ``rate_mb_s``. Returns (status, body bytes, seconds)."""
    sock = socket.socket()
    # A small receive window, so the target (not the kernel) must hold back what it cannot send.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", port))
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(recv_size)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length_match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(length_match.group(1)) if length_match else None
    received = len(rest)
    started = time.monotonic()
    rate = rate_mb_s * 2**20
    while length is None or received < length:
        chunk = sock.recv(recv_size)
        if not chunk:
            break
        received += len(chunk)
        ahead = received / rate - (time.monotonic() - started)
        if ahead > 0.002:
            time.sleep(ahead)
    sock.close()
    return status, received, time.monotonic() - started


@dataclass
class TargetResult:
    name: str
    small: LoadResult | None = None
    big: LoadResult | None = None
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_load_mb: float = 0.0
    stream_bytes: int = 0
    stream_seconds: float = 0.0
    stream_ok: bool = False

    @property
    def growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_idle_mb


def measure(
    target: Target, args: argparse.Namespace, stack: Stack, wrk: str, stream_size: int
) -> TargetResult:
    result = TargetResult(target.name)
    pid = target.pid
    # Stream first, from a just-warmed idle process: the growth then shows what the stream
    # costs, not what a previous load run left in the allocator.
    time.sleep(0.3)
    result.rss_idle_mb = rss_kb(pid) / 1024
    print(
        f"  {target.name}: streaming {stream_size / 2**20:.0f} MB at {args.stream_rate:g} MB/s ...",
        flush=True,
    )
    with RssSampler(pid) as sampler:
        status, received, seconds = slow_read(
            target.port, f"/{APP_ID}{STREAM_PATH}", target.headers, args.stream_rate
        )
    result.rss_peak_mb = sampler.peak_kb / 1024
    result.stream_bytes, result.stream_seconds = received, seconds
    result.stream_ok = status == 200 and received == stream_size
    if not result.stream_ok:
        print(
            f"  {target.name}: stream gave status {status}, {received} of {stream_size} bytes",
            flush=True,
        )
    for label, path in (("small", SMALL_PATH), ("big", BIG_PATH)):
        url = target.base + path
        print(
            f"  {target.name}: wrk {label} page, {args.connections} connections, "
            f"{args.duration:g}s ...",
            flush=True,
        )
        if args.warmup > 0:
            run_wrk(
                wrk,
                url,
                target.headers,
                duration=args.warmup,
                connections=args.connections,
                cpu=stack.load_cpu,
            )
        cpu_before = cpu_seconds(pid)
        load = run_wrk(
            wrk,
            url,
            target.headers,
            duration=args.duration,
            connections=args.connections,
            cpu=stack.load_cpu,
        )
        load.cpu_us_per_req = (cpu_seconds(pid) - cpu_before) / max(1, load.requests) * 1e6
        if load.errors:
            print(f"  {target.name}: {load.errors} errors during the {label} run", flush=True)
        setattr(result, label, load)
    result.rss_after_load_mb = rss_kb(pid) / 1024
    return result


# ---------------------------------------------------------------------------------------------
# Report


def ratios(results: dict[str, TargetResult]) -> dict[str, float | None]:
    proxy, bare = results.get("proxy"), results.get("bare")
    if not (proxy and bare and proxy.small and bare.small and proxy.big and bare.big):
        return {}
    return {
        "small_rps": proxy.small.rps / bare.small.rps,
        "small_p50": proxy.small.p50_ms / bare.small.p50_ms,
        "small_p99": proxy.small.p99_ms / bare.small.p99_ms,
        "big_rps": proxy.big.rps / bare.big.rps,
        "big_p99": proxy.big.p99_ms / bare.big.p99_ms,
        "small_cpu_per_req": proxy.small.cpu_us_per_req / bare.small.cpu_us_per_req,
        "big_cpu_per_req": proxy.big.cpu_us_per_req / bare.big.cpu_us_per_req,
        "rss_growth_mb": proxy.growth_mb,
    }


def verdicts(r: dict[str, float | None]) -> list[tuple[str, bool]]:
    if not r:
        return []
    return [
        (
            f"small page req/s >= {TARGET_SMALL_RPS:.2f}x bare ({r['small_rps']:.2f}x)",
            r["small_rps"] >= TARGET_SMALL_RPS,
        ),  # type: ignore[operator]
        (
            f"small page p99 <= {TARGET_SMALL_P99:.1f}x bare ({r['small_p99']:.2f}x)",
            r["small_p99"] <= TARGET_SMALL_P99,
        ),  # type: ignore[operator]
        (
            f"1 MB page req/s >= {TARGET_BIG_RPS:.2f}x bare ({r['big_rps']:.2f}x)",
            r["big_rps"] >= TARGET_BIG_RPS,
        ),  # type: ignore[operator]
        (
            f"RSS growth over the stream <= {TARGET_RSS_GROWTH_MB:g} MB "
            f"({r['rss_growth_mb']:.1f} MB)",
            r["rss_growth_mb"] <= TARGET_RSS_GROWTH_MB,
        ),  # type: ignore[operator]
    ]


def table(results: dict[str, TargetResult], stream_mb: float) -> str:
    head = [
        "target",
        "small req/s",
        "small p50",
        "small p99",
        "1MB req/s",
        "1MB p99",
        "RSS idle",
        f"RSS peak ({stream_mb:.0f}MB)",
        "growth",
        "small CPU/req",
        "1MB CPU/req",
    ]
    rows: list[list[str]] = []
    for res in results.values():
        s, b = res.small, res.big
        rows.append(
            [
                res.name + ("" if res.stream_ok else " (stream FAILED)"),
                f"{s.rps:,.0f}" if s else "-",
                f"{s.p50_ms:.2f} ms" if s else "-",
                f"{s.p99_ms:.2f} ms" if s else "-",
                f"{b.rps:,.0f}" if b else "-",
                f"{b.p99_ms:.2f} ms" if b else "-",
                f"{res.rss_idle_mb:.1f} MB",
                f"{res.rss_peak_mb:.1f} MB",
                f"{res.growth_mb:+.1f} MB",
                f"{s.cpu_us_per_req:,.0f} µs" if s else "-",
                f"{b.cpu_us_per_req:,.0f} µs" if b else "-",
            ]
        )
    r = ratios(results)
    if r:
        rows.append(
            [
                "proxy/bare",
                f"{r['small_rps']:.2f}x",
                f"{r['small_p50']:.2f}x",
                f"{r['small_p99']:.2f}x",
                f"{r['big_rps']:.2f}x",
                f"{r['big_p99']:.2f}x",
                "",
                "",
                "",
                f"{r['small_cpu_per_req']:.2f}x",
                f"{r['big_cpu_per_req']:.2f}x",
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def versions(nginx: str, wrk: str) -> dict[str, str]:
    import aiohttp

    nginx_v = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    wrk_v = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    return {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "nginx": nginx_v.rpartition("/")[2],
        "wrk": (wrk_v.stdout or wrk_v.stderr).split()[1] if (wrk_v.stdout or wrk_v.stderr) else "?",
        "cpus": str(os.cpu_count()),
        "kernel": platform.release(),
    }


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of unmeasured load before each wrk run (2)"
    )
    parser.add_argument("--stream-mb", type=int, default=300, help="size of the big page (300)")
    parser.add_argument(
        "--stream-rate",
        type=float,
        default=64.0,
        help="MB/s at which the slow client reads the big page (64)",
    )
    parser.add_argument(
        "--targets", default="proxy,bare,nginx", help="comma-separated subset of proxy,bare,nginx"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 3 s per wrk run, 1 s warm-up, 64 MB stream",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.stream_mb = 3, 1, 64
    return args


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="orp-bench-"))
    # nginx workers may run as an unprivileged user; they must read the docroot.
    path.chmod(0o755)
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    nginx, wrk = ensure_nginx(), ensure_wrk()
    pinned = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
    load_cpu, target_cpu = (0, 1) if pinned else (None, None)
    busy_before = cpu_busy()
    if busy_before > 0.15:
        print(
            f"warning: the machine is {busy_before:.0%} busy before the run; other work "
            "competes with the targets and the figures will be low and noisy",
            flush=True,
        )
    started = time.monotonic()
    small, big = small_page(), big_page()
    results: dict[str, TargetResult] = {}

    with workdir(args.keep) as tmp:
        docroot = tmp / "docroot"
        docroot.mkdir(mode=0o755)
        (docroot / "small.json").write_bytes(small)
        (docroot / "1mb.json").write_bytes(big)
        stream_size = write_stream_page(docroot / "stream.json", args.stream_mb * 2**20)
        print(
            f"pages: small {len(small)} B, big {len(big)} B, stream {stream_size} B; "
            f"CPU pinning: {'wrk+upstream on 0, target on 1' if pinned else 'off'}",
            flush=True,
        )

        stack = Stack(tmp, target_cpu, load_cpu)
        try:
            upstream_port = start_upstream(stack, nginx, docroot)
            starters: dict[str, Callable[[], Target]] = {
                "proxy": lambda: start_proxy(stack, upstream_port),
                "bare": lambda: start_bare(stack, upstream_port),
                "nginx": lambda: start_nginx_target(stack, nginx, upstream_port),
            }
            targets = [starters[name]() for name in wanted]
            for target in targets:
                check_target(target, small, big)
            for target in targets:
                print(f"{target.name}:", flush=True)
                results[target.name] = measure(target, args, stack, wrk, stream_size)
        except BaseException:
            for name in ("proxy.log", "bare.log", "nginx-target.out", "upstream.out"):
                tail = stack.log_tail(name, 10)
                if tail:
                    print(f"--- {name} (tail)\n{tail}", file=sys.stderr)
            raise
        finally:
            stack.close()

    elapsed = time.monotonic() - started
    busy_after = cpu_busy()
    r = ratios(results)
    print()
    print(f"python bench/run.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(
        f"{args.connections} connections, {args.duration:g} s per run, stream read at "
        f"{args.stream_rate:g} MB/s; {elapsed:.0f} s in all; machine busy before/after "
        f"the run: {busy_before:.0%}/{busy_after:.0%}"
    )
    print(table(results, args.stream_mb))
    for text, ok in verdicts(r):
        print(f"  {'PASS' if ok else 'MISS'}  {text}")

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "when": stamp,
                "command": [
                    "python",
                    "bench/run.py",
                    *(argv if argv is not None else sys.argv[1:]),
                ],
                "settings": {
                    "duration_s": args.duration,
                    "connections": args.connections,
                    "warmup_s": args.warmup,
                    "stream_bytes": stream_size,
                    "stream_rate_mb_s": args.stream_rate,
                    "pinned": bool(pinned),
                    "small_page_bytes": len(small),
                    "big_page_bytes": len(big),
                },
                "machine_busy_before": busy_before,
                "machine_busy_after": busy_after,
                "versions": versions(nginx, wrk),
                "results": {
                    name: {**asdict(res), "growth_mb": res.growth_mb}
                    for name, res in results.items()
                },
                "ratios_proxy_over_bare": r,
                "targets": [{"target": text, "met": ok} for text, ok in verdicts(r)],
                "elapsed_s": elapsed,
            },
            indent=2,
        )
    )
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if all(res.stream_ok for res in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
