"""The cost of ``[districts.X] rewrite_hrefs = true`` on the 1 MB page (bench/run.py's page).

Two figures, printed side by side; nothing is asserted (they depend on the machine):

1. **The rewriter alone**: ``proxy.gateway.hrefs`` over the 1 MB page fed in 64 KB chunks (what the
   district connection delivers), milliseconds per page, against a loop that only joins the
   same chunks. Wall clock, best of ``--repeat`` runs (the least disturbed by other work).
2. **Through the proxy**: two ``oneroster-proxy serve`` processes, ``rewrite_hrefs = false``
   and ``true`` (the default), in front of the same nginx upstream (bench/run.py's).
   ``--rounds`` interleaved rounds (off, on, off, on ...; which goes first alternates), each
   ``--requests`` sequential keep-alive GETs of the 1 MB page; per round the proxy's CPU time
   per request (``/proc``; much steadier than wall time on a shared machine) and the wall time
   per request. Printed: the median over the rounds with the spread (lowest-highest), and the
   median of the per-round differences (on minus off, from the same pair of rounds, so a
   burst of other work on the machine hits both sides of a difference alike).

    python bench/hrefs.py [--rounds 15] [--requests 40] [--repeat 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run as bench

from proxy.gateway.hrefs import HrefMatcher

CHUNK = 64 * 1024
PATH = f"/{bench.APP_ID}{bench.BIG_PATH}"


def district_page(base_url: str) -> bytes:
    """The 1 MB page with its GUIDRef hrefs naming the district at ``base_url``."""
    return bench.big_page().replace(b"https://district.example", base_url.encode())


def rewriter_alone(base_url: str, repeat: int) -> tuple[float, float, int]:
    """(ms per page rewriting, ms per page only joining the chunks, hrefs rewritten)."""
    page = district_page(base_url)
    chunks = [page[i : i + CHUNK] for i in range(0, len(page), CHUNK)]
    matcher = HrefMatcher.for_district(base_url)
    public = f"https://proxy.example/{bench.APP_ID}/ims/oneroster/"

    def rewrite() -> bytes:
        stream = matcher.stream(public)
        return b"".join([*(stream.feed(c) for c in chunks), stream.close()])

    def copy() -> bytes:
        return b"".join(list(chunks))

    def best(fn: object) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return min(times) * 1000

    out = rewrite()
    return best(rewrite), best(copy), out.count(public.encode())


def start_proxy(stack: bench.Stack, upstream_port: int, rewrite: bool) -> bench.Target:
    port, admin_port = bench.free_port(), bench.free_port()
    name = "on" if rewrite else "off"
    config = stack.tmp / f"proxy-{name}.toml"
    config.write_text(f"""\
[server]
listen = "127.0.0.1:{port}"

[admin]
listen = "127.0.0.1:{admin_port}"

[store]
url = "sqlite://{stack.tmp}/store-{name}.db"

[vendors.acme]

[districts.springfield]
base_url = "http://127.0.0.1:{upstream_port}"
rewrite_hrefs = {"true" if rewrite else "false"}

[connections.{bench.APP_ID}]
vendor = "acme"
district = "springfield"
key = "bench-key"
secret = "bench-secret"
scopes = ["roster.readonly"]
""")
    token = bench.issue_token(config)
    proc = stack.spawn([*bench.CLI, "serve", "--config", str(config)], f"proxy-{name}.log", None)
    bench.wait_port(port, proc, f"proxy ({name})")
    return bench.Target(name, port, proc, headers={"Authorization": f"Bearer {token}"})


class Client:
    """One keep-alive connection to one proxy, warmed up (token cache, pooled upstream)."""

    def __init__(self, target: bench.Target) -> None:
        self.target = target
        self.conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
        self.body = b""
        for _ in range(10):
            self.get()

    def get(self) -> None:
        self.conn.request("GET", PATH, headers=self.target.headers)
        response = self.conn.getresponse()
        self.body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.target.name}: status {response.status}")

    def round(self, count: int) -> tuple[float, float]:
        """(proxy CPU ms per request, wall ms per request) over ``count`` requests."""
        cpu, started = bench.cpu_seconds(self.target.pid), time.perf_counter()
        for _ in range(count):
            self.get()
        wall = time.perf_counter() - started
        cpu = bench.cpu_seconds(self.target.pid) - cpu
        return cpu / count * 1000, wall / count * 1000


def interleaved(off: Client, on: Client, rounds: int, count: int) -> dict[str, list[float]]:
    """Per-round figures of both proxies, rounds interleaved and their order alternating."""
    out: dict[str, list[float]] = {k: [] for k in ("off_cpu", "off_wall", "on_cpu", "on_wall")}
    for i in range(rounds):
        pair = (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off))
        for name, client in pair:
            cpu, wall = client.round(count)
            out[f"{name}_cpu"].append(cpu)
            out[f"{name}_wall"].append(wall)
    return out


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ms ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per proxy")
    parser.add_argument("--requests", type=int, default=40, help="requests per round")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    nginx = bench.ensure_nginx()

    with bench.workdir(False) as tmp:
        docroot = tmp / "docroot"
        docroot.mkdir(mode=0o755)
        for name in ("small.json", "1mb.json", "stream.json"):
            (docroot / name).write_bytes(b"{}")
        stack = bench.Stack(tmp, None, None)
        try:
            upstream_port = bench.start_upstream(stack, nginx, docroot)
            base_url = f"http://127.0.0.1:{upstream_port}"
            page = district_page(base_url)
            (docroot / "1mb.json").write_bytes(page)
            alone, copy, count = rewriter_alone(base_url, args.repeat)
            off = Client(start_proxy(stack, upstream_port, rewrite=False))
            on = Client(start_proxy(stack, upstream_port, rewrite=True))
            rounds = interleaved(off, on, args.rounds, args.requests)
        finally:
            stack.close()

    if off.body != page or json.loads(on.body) == json.loads(page) or base_url.encode() in on.body:
        print("error: the proxies did not answer as expected", file=sys.stderr)
        return 1
    cpu_cost = [b - a for a, b in zip(rounds["off_cpu"], rounds["on_cpu"], strict=True)]
    wall_cost = [b - a for a, b in zip(rounds["off_wall"], rounds["on_wall"], strict=True)]
    print(f"python bench/hrefs.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"page: {len(page)} B, {count} hrefs rewritten, fed in {CHUNK // 1024} KB chunks")
    print(f"rewriter alone:  {alone:.2f} ms/page (joining the chunks only: {copy:.2f} ms)")
    print(
        f"through the proxy, {args.rounds} interleaved rounds of {args.requests} sequential "
        "requests each; median per request (lowest-highest round):"
    )
    for name in ("false", "true"):
        side = "off" if name == "false" else "on"
        cpu, wall = spread(rounds[f"{side}_cpu"]), spread(rounds[f"{side}_wall"])
        print(f"  rewrite_hrefs = {name}:{' ' if side == 'on' else ''} CPU {cpu}, wall {wall}")
    print(
        f"  cost (on - off, per pair of rounds): CPU {spread(cpu_cost)}, wall {spread(wall_cost)}"
    )
    off_cpu = statistics.median(rounds["off_cpu"])
    print(f"  CPU cost relative to off: {statistics.median(cpu_cost) / off_cpu:+.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
