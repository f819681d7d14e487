"""Instructions per request, counted by callgrind: a load-independent view of the small page.

``bench/targets.py`` measures req/s and latency, which swing with whatever else the machine is
doing. This counts the CPU instructions each target executes per small-page request of the
same scenario (``GET /<appId>/ims/oneroster/rostering/v1p2/users?limit=100``, the 2,381-byte
page from the nginx district, opaque token, OAuth1 HMAC-SHA256, sqlite store, metrics and the
JSON access log on) with valgrind's callgrind: the same count on a busy or an idle machine, so
a change to the hot path can be judged on its own. bare/proxy predicts the req/s ratio on an
idle core (req/s ~ 1 / instructions when the target is CPU-bound).

    python bench/icount.py [--requests 300] [--warmup 50] [--targets proxy,bare,bare-uvloop]
                           [--loop uvloop|asyncio] [--max-connections N] [--courtesy] [--keep]

``bare`` is ``bare_forwarder.py --chunked`` (the baseline of ``targets.py``), ``bare-uvloop``
the same on uvloop; ``--loop`` sets ``ONEROSTER_PROXY_LOOP`` for the proxy. Each target runs
under ``valgrind --tool=callgrind`` with instrumentation off; after the warm-up (token cache
filled, connections pooled) it is switched on for exactly ``--requests`` sequential keep-alive
requests, then the counts are dumped (``--keep`` keeps them, for ``callgrind_annotate``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as rb
import targets as tg


def requests(port: int, path: str, headers: dict[str, str], count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(count):
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    conn.close()


class Counted(tg.Bench):
    """The bench's processes, with the targets under callgrind (instrumentation off)."""

    out_dir: Path

    def spawn(self, argv: list[str], log: str, cpus: str | None) -> subprocess.Popen[bytes]:
        if log.endswith(".log") and not log.startswith("slow"):
            name = log.removesuffix(".log")
            argv = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={self.out_dir}/callgrind.{name}.%p",
                *argv,
            ]
        return self.stack.spawn(argv, log, None)


def count(bench: Counted, node: tg.Node, n: int, warmup: int) -> int:
    path = node.prefix + tg.SMALL
    requests(node.port, path, node.headers, warmup)
    pid = str(node.pids()[0])  # valgrind runs python in its own process
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    requests(node.port, path, node.headers, n)
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the dump holds the counts since "on"
        for dump in sorted(bench.out_dir.glob(f"callgrind.{node.name}.*")):
            match = re.search(r"^totals:\s+(\d+)", dump.read_text(errors="replace"), re.M)
            if match and int(match.group(1)) > 0:
                return int(match.group(1))
        time.sleep(0.5)
    raise RuntimeError(f"no callgrind dump with counts for {node.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--targets", default="proxy,bare,bare-uvloop")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), help="the proxy's loop")
    parser.add_argument("--keep", action="store_true", help="keep the callgrind dumps")
    parser.add_argument(
        "--max-connections", type=int, help="cap the district (store slots on the hot path)"
    )
    parser.add_argument(
        "--courtesy",
        action="store_true",
        help="give the district a time zone, a window holding all day and a pause to come "
        "(the window's cap is --max-connections, 400 by default)",
    )
    args = parser.parse_args()
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    wait_port = rb.wait_port
    # Under valgrind a Python process takes a minute or more to start listening.
    rb.wait_port = lambda port, proc, what, timeout=600: wait_port(  # type: ignore[assignment]
        port, proc, what, timeout
    )
    if args.loop:
        os.environ["ONEROSTER_PROXY_LOOP"] = args.loop
    options = tg.parse_args(["--no-pin", "--warmup", "0"])
    per: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="orp-icount-"))
    tmp.chmod(0o755)
    try:
        docroot = tg.small_docroot(tmp)
        for name in wanted:
            bench = Counted(options, tmp)
            bench.out_dir = tmp
            if args.max_connections:
                bench.district_cap = f"max_connections = {args.max_connections}\n"
            if args.courtesy:
                cap = args.max_connections or 400
                bench.district_cap += (
                    'timezone = "America/Chicago"\n'
                    f'windows = [{{ days = "mon-sun", from = "00:00", to = "24:00", '
                    f"max_connections = {cap} }}]\n"
                    'pauses = [{ from = 2099-06-20, to = 2099-08-01, reason = "summer" }]\n'
                )
            try:
                district = bench.start_district(docroot)
                if name == "proxy":
                    node = bench.start_proxy("proxy", district, district, 1, None)
                else:
                    node = bench.start_bare(name, district, uvloop=name == "bare-uvloop")
                per[name] = count(bench, node, args.requests, args.warmup) / args.requests
            finally:
                bench.stack.close()
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    loop = args.loop or ("uvloop" if tg.uvloop_installed() else "asyncio")
    print(
        f"instructions per small-page request ({args.requests} requests after {args.warmup} "
        f"warm-up, callgrind; proxy on {loop}):"
    )
    for name, value in per.items():
        print(f"  {name:12} {value / 1000:10,.0f}k")
    for base in ("bare", "bare-uvloop"):
        if per.get(base) and per.get("proxy"):
            print(
                f"  proxy/{base} {per['proxy'] / per[base]:.2f}x "
                f"(predicts ~{per[base] / per['proxy']:.2f}x of {base}'s req/s on an idle core)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
