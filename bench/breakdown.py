"""Where a small-page request's CPU goes: the proxy's CPU per request, split by part.

    python bench/breakdown.py [--duration 12] [--loop uvloop|asyncio] [--rate 200]

The scenario of ``bench/targets.py`` (nginx district, the 2,381-byte users page, OAuth1,
sqlite store, metrics and the JSON access log on). The proxy runs pinned to CPU 1 under
``wrk -t1 -c50`` on CPU 0; its CPU seconds over the run (``/proc/<pid>/stat``) divided by the
requests give µs per request, and py-spy samples of the same run (``--rate`` Hz) split them:
each sample goes to the part that owns it, judged from its stack (the innermost frame of the
proxy or aiohttp, or a part of the proxy anywhere on it: signing, the access line, metrics,
header rewriting, the token cache). The split is a sampled estimate (a few hundred samples
per part at most); ``bench/icount.py`` gives the exact totals. Needs ``py-spy`` (the ``dev``
extra). The machine's other work inflates the µs more than it moves the split.
"""

from __future__ import annotations

import argparse
import collections
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

SPECIFIC = [
    ("OAuth1 signing", r"proxy/signing/"),
    ("access log line", r"proxy/logs\.py"),
    ("metrics", r"prometheus_client|proxy/metrics\.py|proxy/activity"),
    ("header rewrite (Link, hop-by-hop)", r"proxy/rewrite\.py|proxy/hrefs"),
    ("bearer token (cache look-up)", r"proxy/inbound\.py|proxy/tokens"),
]
CLIENT = r"proxy/pool\.py|aiohttp/client|aiohttp/connector"
GATEWAY = r"proxy/(app|handler|upstream|limits|forward|paths|scopes|context|runtime|resolve)\.py"
SERVER = r"aiohttp/|proxy/inbound_limits|multidict|yarl"
STDLIB = (
    r"proxy/eventloop\.py|asyncio/|selectors\.py|contextlib|typing|enum|<frozen|threading|"
    r"functools|/re/|/json/|Runner\.run|<string>|cli/"
)
LOOP = "event loop (polling, callbacks, task switches)"


def classify(frames: list[str]) -> str:
    """The part one sample (its stack, outermost frame first) belongs to."""
    for name, pattern in SPECIFIC:
        if any(re.search(pattern, f) for f in frames):
            return name
    owner = next((f for f in reversed(frames) if not re.search(STDLIB, f)), None)
    if owner is None:
        return LOOP
    if re.search(GATEWAY, owner):
        return "gateway steps (Observed, Gateway, Upstream, limits, paths, scopes)"
    if any(re.search(CLIENT, f) for f in frames):
        return "district client (request write, response parse)"
    if re.search(SERVER, owner):
        return "vendor server (aiohttp web: parse, route, response, write)"
    return "other: " + owner[:50]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=12, help="seconds of measured load")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), help="the proxy's loop")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args()
    spy = rb.python_tool("py-spy")
    if spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    if args.loop:
        os.environ["ONEROSTER_PROXY_LOOP"] = args.loop
    options = tg.parse_args([])
    tmp = Path(tempfile.mkdtemp(prefix="orp-breakdown-"))
    tmp.chmod(0o755)
    try:
        docroot = tg.small_docroot(tmp)
        bench = tg.Bench(options, tmp)
        try:
            district = bench.start_district(docroot)
            proxy = bench.start_proxy("proxy", district, district, 1, bench.target_cpu)
            pid = proxy.pids()[0]
            url = bench.url(proxy, tg.SMALL)
            wrk = [*tg.pin(bench.load_cpu), bench.wrk, "-t1", "-c50"]
            wrk += ["-H", f"Authorization: {proxy.headers['Authorization']}"]
            subprocess.run([*wrk, "-d3s", url], capture_output=True, check=True)
            before = rb.cpu_seconds(pid)
            load = subprocess.Popen([*wrk, f"-d{args.duration}s", url], stdout=subprocess.PIPE)
            time.sleep(1)
            profile = tmp / "profile.txt"
            record = [spy, "record", "-p", str(pid), "-d", str(max(1, args.duration - 3))]
            record += ["-r", str(args.rate), "-f", "raw", "-o", str(profile), "--nonblocking"]
            subprocess.run(record, capture_output=True, check=True)
            out = load.communicate()[0].decode()
            cpu = rb.cpu_seconds(pid) - before
        finally:
            bench.stack.close()
        found = re.search(r"(\d+) requests in", out)
        if found is None:
            raise RuntimeError(f"no wrk summary: {out}")
        requests = int(found.group(1))
        per_request = cpu / requests * 1e6
        parts: collections.Counter[str] = collections.Counter()
        for line in profile.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack:
                parts[classify(stack.split(";"))] += int(count)
        total = sum(parts.values())
        loop = tg.proxy_loop(tmp / "proxy.log")
        print(
            f"{per_request:.0f} µs CPU per small-page request ({requests} requests, wrk -t1 "
            f"-c50, proxy on {loop}, {total} py-spy samples)"
        )
        small = 0
        for name, count in parts.most_common():
            if name.startswith("other: ") and count / total < 0.01:
                small += count
                continue
            print(f"  {count / total * per_request:6.1f} µs  {count / total:5.1%}  {name}")
        if small:
            print(f"  {small / total * per_request:6.1f} µs  {small / total:5.1%}  other")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
