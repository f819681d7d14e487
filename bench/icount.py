"""Instructions per request, counted by callgrind: a load-independent view of the small page.

``bench/run.py`` measures req/s and latency, which swing with whatever else the machine is
doing. This counts the CPU instructions the proxy and the bare forwarder execute per small-page
request (valgrind's callgrind, the same count on a busy or an idle machine), so a change to the
hot path can be judged on its own. The ratio proxy/bare predicts the req/s ratio on an idle
core (req/s ~ 1 / instructions when the target is CPU-bound).

    python bench/icount.py [--requests 300] [--warmup 50]

Each target runs under ``valgrind --tool=callgrind`` with instrumentation off; after the warm-up
(token cache filled, connections pooled) instrumentation is switched on for exactly ``--requests``
sequential keep-alive requests, then the count is dumped.
"""

from __future__ import annotations

import argparse
import http.client
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench


def requests(port: int, path: str, headers: dict[str, str], count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(count):
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    conn.close()


def count(target: bench.Target, out_file: Path, n: int, warmup: int) -> int:
    path = f"/{bench.APP_ID}{bench.SMALL_PATH}"
    requests(target.port, path, target.headers, warmup)
    subprocess.run(
        ["callgrind_control", "-i", "on", str(target.pid)], check=True, capture_output=True
    )
    requests(target.port, path, target.headers, n)
    subprocess.run(
        ["callgrind_control", "-i", "off", str(target.pid)], check=True, capture_output=True
    )
    subprocess.run(["callgrind_control", "-d", str(target.pid)], check=True, capture_output=True)
    # The dump is the counts since collection was switched on; wait for valgrind to write it.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for dump in sorted(out_file.parent.glob(out_file.name + "*")):
            text = dump.read_text(errors="replace")
            match = re.search(r"^totals:\s+(\d+)", text, re.M)
            if match and int(match.group(1)) > 0:
                return int(match.group(1))
        time.sleep(0.5)
    raise RuntimeError(f"no callgrind dump with counts in {out_file.parent}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    nginx = bench.ensure_nginx()
    wait_port = bench.wait_port
    # Under valgrind a Python process takes a minute or more to start listening.
    bench.wait_port = lambda port, proc, what, timeout=600: wait_port(  # type: ignore[assignment]
        port, proc, what, timeout
    )
    results: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="orp-icount-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        docroot = tmp / "docroot"
        docroot.mkdir(mode=0o755)
        (docroot / "small.json").write_bytes(bench.small_page())
        (docroot / "1mb.json").write_bytes(bench.big_page())
        (docroot / "stream.json").write_bytes(b"{}")
        for name, start in (("proxy", bench.start_proxy), ("bare", bench.start_bare)):
            stack = bench.Stack(tmp, None, None)
            out_file = tmp / f"callgrind.{name}"
            prefix = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out_file}.%p",
            ]
            original = bench.pin
            try:
                upstream = bench.start_upstream(stack, nginx, docroot)
                bench.pin = lambda cpu, prefix=prefix: prefix  # type: ignore[assignment]
                target = start(stack, upstream)
                bench.pin = original
                results[name] = count(target, out_file, args.requests, args.warmup)
            finally:
                bench.pin = original
                stack.close()
    per = {name: total / args.requests for name, total in results.items()}
    print(
        f"instructions per small-page request ({args.requests} requests after "
        f"{args.warmup} warm-up, callgrind):"
    )
    for name, value in per.items():
        print(f"  {name:6} {value / 1000:10,.0f}k")
    if per.get("bare"):
        print(
            f"  proxy/bare {per['proxy'] / per['bare']:.2f}x "
            f"(predicts ~{per['bare'] / per['proxy']:.2f}x of bare's req/s on an idle core)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
