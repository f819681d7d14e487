"""Per-request cost of OAuth1 signing: proxy.signing.oauth1 against oauthlib's Client.sign.

Run from the repository root:

    python bench/bench_signer.py [--number N] [--repeat R]   # CPU µs per signature
    python bench/bench_signer.py --icount                     # instructions per signature

The default mode prints CPU µs per signature (best of R runs of N calls; CPU time, so time spent
descheduled on a shared machine is not counted) for a few typical OneRoster URLs, with
HMAC-SHA256 and HMAC-SHA1, and the ratio. ``--icount`` runs the same calls once under valgrind's
callgrind and prints instructions per signature instead: the same count on a busy machine or an
idle one (a run takes about half a minute). Before measuring, both sides sign each URL with one
fixed nonce and timestamp and must produce the same header; while measuring, ours makes a fresh
nonce and timestamp per call, as on the hot path.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from oauthlib.oauth1 import Client

from proxy.signing.oauth1 import OAuth1Signer

KEY = "InfiniteCampus_acme_6f1c0e4e-2b7d-4f6a-9d1e-3c2b1a0f9e8d"
SECRET = "s3cr+t/with=odd~chars&more"
NONCE = "0123456789abcdef0123456789abcd"
TIMESTAMP = "1700000000"
METHODS = ("HMAC-SHA256", "HMAC-SHA1")
CASES: list[tuple[str, str]] = [
    (
        "no query",
        "https://district.example/campus/api/oneroster/v1p1/acme/ims/oneroster/v1p1/users",
    ),
    (
        "typical",
        "https://district.example/campus/api/oneroster/v1p1/acme/ims/oneroster/v1p1/users"
        "?limit=100&offset=200",
    ),
    (
        "filter",
        "https://district.example/ims/oneroster/rostering/v1p2/users?limit=100&offset=0"
        "&filter=familyName%3D%27O%27Brien%27%20AND%20status%3D%27active%27"
        "&fields=sourcedId,givenName,familyName&sort=familyName",
    ),
]
HEADER = f"{'method':<12} {'case':<9} {'ours':>11} {'oauthlib':>11} {'ratio':>6}"


def targets() -> list[tuple[str, str, Callable[[], object], Callable[[], object]]]:
    """(method, case, ours, oauthlib's) for every method and case, checked to agree."""
    out = []
    for method in METHODS:
        signer = OAuth1Signer(KEY, SECRET, method)
        client = Client(
            KEY, client_secret=SECRET, signature_method=method, nonce=NONCE, timestamp=TIMESTAMP
        )
        for name, url in CASES:
            ours = signer.authorization("GET", url, nonce=NONCE, timestamp=TIMESTAMP)
            theirs = client.sign(url, "GET")[1]["Authorization"]
            if ours != theirs:
                raise SystemExit(f"headers differ for {name}:\n  {ours}\n  {theirs}")
            out.append(
                (
                    method,
                    name,
                    functools.partial(signer.authorization, "GET", url),
                    functools.partial(client.sign, url, "GET"),
                )
            )
    return out


def row(method: str, name: str, ours: float, theirs: float, fmt: str) -> str:
    return f"{method:<12} {name:<9} {ours:>11{fmt}} {theirs:>11{fmt}} {theirs / ours:>5.1f}x"


def cpu_time(number: int, repeat: int) -> None:
    def best_us(fn: Callable[[], object], n: int) -> float:
        timings = timeit.repeat(fn, number=n, repeat=repeat, timer=time.process_time)
        return min(timings) / n * 1e6

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"CPU µs per signature, best of {repeat} x {number} (load average {load})")
    print(HEADER)
    for method, name, ours, theirs in targets():
        ours_us = best_us(ours, number)
        theirs_us = best_us(theirs, max(1, number // 10))
        print(row(method, name, ours_us, theirs_us, ".2f"))


# Under callgrind, collection is on only inside functools.reduce (a C function, so callgrind
# can toggle on it) and a profile is dumped each time it returns: one dump per measurement.
ICOUNT_CALLS = {"ours": 400, "oauthlib": 40}


def icount_child() -> None:
    for _method, _name, ours, theirs in targets():
        for side, fn in (("ours", ours), ("oauthlib", theirs)):
            for _ in range(20):  # warm caches (regexes, origins) outside the count
                fn()
            functools.reduce(lambda acc, _, fn=fn: fn(), range(ICOUNT_CALLS[side]), None)


def icount() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=functools_reduce",
                "--dump-after=functools_reduce",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--icount-child",
            ],
            check=True,
            capture_output=True,
        )
        totals = []
        for index in range(1, 2 * len(METHODS) * len(CASES) + 1):
            text = pathlib.Path(f"{out}.{index}").read_text()
            match = re.search(r"^totals:\s+(\d+)", text, re.M)
            if match is None:
                raise SystemExit(f"no totals in callgrind dump {index}")
            totals.append(int(match.group(1)))
    print("instructions per signature (valgrind --tool=callgrind)")
    print(HEADER)
    counts = iter(totals)
    for method in METHODS:
        for name, _ in CASES:
            ours = next(counts) / ICOUNT_CALLS["ours"]
            theirs = next(counts) / ICOUNT_CALLS["oauthlib"]
            print(row(method, name, ours, theirs, ",.0f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--icount", action="store_true", help="count instructions (valgrind)")
    parser.add_argument("--icount-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.icount_child:
        icount_child()
    elif args.icount:
        icount()
    else:
        cpu_time(args.number, args.repeat)


if __name__ == "__main__":
    main()
