"""A change-feed walk of a large district: memory and time against the district's own time.

    python bench/changes_walk.py [--users 100000] [--page-delay 0.1] [--store sqlite|redis]

One run, all on loopback:

1. A sandbox district (its own process) with ``--users`` synthetic users, each page answered
   after ``--page-delay`` seconds (the ``delay_head`` fault), as a busy SIS would.
2. **District time**: every ``users`` page of 1,000 read in a row by a plain signed client
   that keeps nothing (OAuth1, the proxy's own signer): what the district needs to serve them.
   Every collection a walk reads is read so (``roster-core.readonly``: orgs, academicSessions,
   courses, classes, users, enrollments), one warm-up round first.
3. **First walk** and **second walk** (nothing changed) of that connection, each in a fresh
   process (``--child``): VmRSS just before the walk (everything imported, store open) and
   the peak (VmHWM) after it; the walk's wall time.

Prints the figures and the two targets of docs/http-api.md "Change feed": growth within
64 MiB, walk time at most 1.2x the district time. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGE = 1000
SCOPES = ("roster-core.readonly",)


def vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def sandbox_main(users: int, delay: float, port_file: str) -> None:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.options import Faults
    from proxy.sandbox.server import start_sandbox

    async def run() -> None:
        options = SandboxOptions(
            synthetic_users=users, faults=Faults(delay_head=delay), record_limit=0,
            key="bench-key", secret="bench-secret-0123456789",
        )  # fmt: skip
        running = await start_sandbox(options)
        await asyncio.to_thread(Path(port_file).write_text, running.base_url)
        await asyncio.Event().wait()

    asyncio.run(run())


async def district_time(base_url: str) -> tuple[float, int]:
    """Every page a walk reads (each collection the scopes allow, 1,000 a page), in a row,
    keeping nothing: the seconds and the number of pages."""
    import aiohttp

    from proxy.changes.pages import allowed, collection_path
    from proxy.signing.oauth1 import OAuth1Signer

    signer = OAuth1Signer("bench-key", "bench-secret-0123456789", "HMAC-SHA256")
    pages = 0
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        for collection in allowed(frozenset(SCOPES)):
            offset, total = 0, 1
            while offset < total:
                path = collection_path("v1p2", collection)
                url = f"{base_url}/ims/oneroster/{path}?limit={PAGE}&offset={offset}"
                headers = {"Authorization": signer.authorization("GET", url)}
                async with session.get(url, headers=headers) as response:
                    assert response.status == 200, response.status
                    await response.read()
                    total = int(response.headers["X-Total-Count"])
                offset += PAGE
                pages += 1
    return time.monotonic() - started, pages


def child_main(config_path: str) -> None:
    from proxy import config as config_mod
    from proxy.app import create_app, running
    from proxy.changes.diff import Walk
    from proxy.gateway.context import SERVICES
    from proxy.store import open_store

    config = config_mod.load(config_path)

    async def run() -> dict[str, Any]:
        services = create_app(config, open_store(config.store.url))[SERVICES]
        async with running(services):
            conn = services.runtime.current.connections["app-7"]
            await services.store.get_walk("app-7")  # the store open, its schema read
            idle = vm("VmRSS")
            started = time.monotonic()
            walk = await Walk(services, conn).run()
            took = time.monotonic() - started
        return {
            "idle": idle,
            "peak": vm("VmHWM"),
            "seconds": took,
            "state": walk.state,
            "counts": walk.counts,
            "error": walk.error,
        }

    print(json.dumps(asyncio.run(run())))


def config_text(base_url: str, store_url: str) -> str:
    return f"""
[store]
url = "{store_url}"
secret_keys = ["{"A" * 43}"]

[vendors.acme]

[districts.bench]
base_url = "{base_url}"
versions = ["1.2"]

[connections.app-7]
vendor = "acme"
district = "bench"
key = "bench-key"
secret = "bench-secret-0123456789"
scopes = {json.dumps(list(SCOPES))}
changes = true
"""


def walk_in_child(config_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(config_path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--page-delay", type=float, default=0.1)
    parser.add_argument("--store", default="", help="a store URL (default: a fresh sqlite file)")
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--sandbox", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    if args.sandbox:
        sandbox_main(args.users, args.page_delay, args.sandbox)
        return

    work = Path(tempfile.mkdtemp(prefix="orp-walk-bench-"))
    port_file = work / "sandbox.url"
    district = subprocess.Popen(
        [sys.executable, __file__, "--sandbox", str(port_file), "--users", str(args.users),
         "--page-delay", str(args.page_delay)],
        cwd=REPO,
    )  # fmt: skip
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        base_url = port_file.read_text()
        store_url = args.store or f"sqlite://{work}/store.db"
        config_path = work / "proxy.toml"
        config_path.write_text(config_text(base_url, store_url))
        # Everything the district does per walk is read once unmeasured (warm caches).
        asyncio.run(district_time(base_url))
        alone, pages = asyncio.run(district_time(base_url))
        first = walk_in_child(config_path)
        second = walk_in_child(config_path)
    finally:
        district.terminate()
        district.wait()

    mib = 1024 * 1024
    print(f"users: {args.users}, page: {PAGE}, page delay: {args.page_delay}s, store: "
          f"{'sqlite' if not args.store else args.store.partition(':')[0]}")  # fmt: skip
    print(f"district alone: {alone:.2f} s for the {pages} pages a walk reads")
    for name, run in (("first walk", first), ("second walk", second)):
        users = run["counts"].get("users", {})
        growth = (run["peak"] - run["idle"]) / mib
        ratio = run["seconds"] / alone
        print(
            f"{name}: {run['state']}, {run['seconds']:.2f} s ({ratio:.2f}x the district), "
            f"RSS {run['idle'] / mib:.1f} -> peak {run['peak'] / mib:.1f} MiB "
            f"(+{growth:.1f} MiB); users {users}"
        )
        print(f"  memory within +64 MiB: {'PASS' if growth <= 64 else 'MISS'}; "
              f"time within 1.2x: {'PASS' if ratio <= 1.2 else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    main()
