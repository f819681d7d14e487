"""What a second vendor's single lookup waits while a first vendor saturates a slow, capped
district: first come, first served (the queue before fair share) against fair share.

The district answers every request after ``--delay`` seconds (500 ms, ``slow_district.py``) and
is capped at ``--cap`` connections (2). Vendor ``acme`` keeps ``--bulk`` requests (8) in
flight without pause, as a full sync paging through users does; vendor ``other`` then makes
``--lookups`` single requests (20 per round), one after another. A lookup's *wait* is its time
to answer less the district's own ``--delay``: the time it queued for a slot.

    python bench/fair_share.py [--rounds 3] [--lookups 20] [--bulk 8] [--cap 2] [--delay 0.5]
                               [--max-wait 60] [--replicas]

``fifo`` replaces the proxy's queue with one that ignores vendors and connections (every waiter
in one line, in arrival order: the behaviour before fair share); ``fair`` is the proxy as
shipped. Both run in this process on loopback (the proxy, the district, the clients): every
wait is a sleep of the district's, not CPU, so the one process does not skew them.
``--replicas`` sends the sync through one proxy and the lookups through a second one on the
same sqlite store (one cap, two queues): fair share across replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from slow_district import create_app as slow_district

from proxy import config as config_mod
from proxy import tokens
from proxy.courtesy.fair import FairSlots
from proxy.gateway import limits as limits_mod
from proxy.gateway.context import SERVICES
from proxy.serve.server import bind_socket, start

PAGE = json.dumps({"users": [{"sourcedId": "u1", "givenName": "A"}]}).encode()


class FifoSlots(FairSlots):
    """Every waiter in one line, in arrival order, whoever it is for (the old queue)."""

    def try_take(self, vendor: str = "", app: str = "") -> bool:
        return super().try_take()

    async def acquire(self, within: float, vendor: str = "", app: str = "") -> bool:
        return await super().acquire(within)


def config(tmp: Path, district_port: int, cap: int, max_wait: float) -> config_mod.Config:
    doc = f"""
[server]
listen = "127.0.0.1:0"
upstream_timeout = "60s"

[admin]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{tmp}/store.db"

[vendors.acme]
[vendors.other]

[districts.slowville]
base_url = "http://127.0.0.1:{district_port}"
max_connections = {cap}
max_wait = "{max_wait}s"

"""
    for app, vendor in (("app-bulk", "acme"), ("app-lookup", "other")):
        doc += f"""
[connections.{app}]
vendor = "{vendor}"
district = "slowville"
key = "k"
secret = "s"
scopes = ["roster-core.readonly"]
"""
    return config_mod.loads(doc.encode(), source="fair_share.toml")


async def one_round(mode: str, args: argparse.Namespace) -> list[float]:
    limits_mod.FairSlots = FifoSlots if mode == "fifo" else FairSlots  # type: ignore[misc]
    tmp = Path(tempfile.mkdtemp(prefix="orp-fair-"))
    runner = web.AppRunner(slow_district(PAGE, args.delay))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    district_port = runner.addresses[0][1]
    cfg = config(tmp, district_port, args.cap, args.max_wait)
    proxies = []
    for _ in range(2 if args.replicas else 1):  # replicas: one sqlite file, one cap
        proxies.append(
            await start(
                cfg,
                gateway_sock=bind_socket(config_mod.Listen("127.0.0.1", 0)),
                admin_sock=bind_socket(config_mod.Listen("127.0.0.1", 0)),
            )
        )
    running = proxies[0]
    store = running.gateway[SERVICES].store
    bulk_token = (await tokens.issue(store, "acme", ttl=None, interface="cli")).token
    lookup_token = (await tokens.issue(store, "other", ttl=None, interface="cli")).token
    bases = {
        "app-bulk": f"http://127.0.0.1:{proxies[0].gateway_port}",
        "app-lookup": f"http://127.0.0.1:{proxies[-1].gateway_port}",
    }
    stop = asyncio.Event()
    waits: list[float] = []
    refused = 0
    gaps = random.Random(7)
    limit = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=limit) as http:

        async def get(app: str, token: str, rest: str) -> int:
            url = f"{bases[app]}/{app}/ims/oneroster/v1p1/{rest}"
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                await resp.read()
                if resp.status not in (200, 503):
                    raise RuntimeError(f"{app}: {resp.status}")
                return resp.status

        async def sync(worker: int) -> None:
            page = 0
            while not stop.is_set():
                await get("app-bulk", bulk_token, f"users?limit=100&offset={page * 100}")
                page += 1

        syncs = [asyncio.create_task(sync(i)) for i in range(args.bulk)]
        await asyncio.sleep(args.delay * 3)  # the queue is full and turning over
        for _ in range(args.lookups):
            started = time.monotonic()
            status = await get("app-lookup", lookup_token, "orgs/org-1")
            # A 503 waited max_wait for a slot and got none: counted as that long a wait.
            waits.append(time.monotonic() - started - (args.delay if status == 200 else 0))
            refused += status == 503
            # Lookups land at random points of the district's turn-over (seeded: both modes
            # see the same gaps).
            await asyncio.sleep(gaps.uniform(0, args.delay))
        stop.set()
        await asyncio.gather(*syncs)
    for proxy in proxies:
        await proxy.stop(5.0)
    await runner.cleanup()
    if refused:
        print(f"  ({mode}: {refused} of {args.lookups} lookups answered 503 after max_wait)")
    return waits


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10)
    return (
        f"median {statistics.median(values) * 1000:6.0f} ms  "
        f"p10 {q[0] * 1000:5.0f}  p90 {q[-1] * 1000:5.0f}  "
        f"min {min(values) * 1000:5.0f}  max {max(values) * 1000:5.0f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--bulk", type=int, default=8, help="acme's requests kept in flight")
    parser.add_argument("--cap", type=int, default=2, help="the district's max_connections")
    parser.add_argument("--delay", type=float, default=0.5, help="the district's seconds")
    parser.add_argument("--max-wait", type=float, default=60.0, help="the district's max_wait")
    parser.add_argument(
        "--replicas",
        action="store_true",
        help="the sync through one proxy, the lookups through a second on the same store",
    )
    args = parser.parse_args()
    results: dict[str, list[list[float]]] = {"fifo": [], "fair": []}
    for _ in range(args.rounds):
        for mode in ("fifo", "fair"):  # interleaved, so a busy moment hits both
            results[mode].append(await one_round(mode, args))
    print(
        f"wait of a second vendor's lookup (time to answer less the district's "
        f"{args.delay * 1000:.0f} ms) while {args.bulk} requests of a sync keep a district "
        f"capped at {args.cap} busy; {args.lookups} lookups per round"
        + (", sync and lookups on two replicas:" if args.replicas else ":")
    )
    for mode, rounds in results.items():
        for i, waits in enumerate(rounds, 1):
            print(f"  {mode} round {i}: {spread(waits)}")
        medians = [statistics.median(w) * 1000 for w in rounds]
        print(f"  {mode} medians of the rounds: {', '.join(f'{m:.0f}' for m in medians)} ms")


if __name__ == "__main__":
    asyncio.run(main())
