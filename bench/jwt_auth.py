"""The cost of the JWT kill switch (``proxy.gateway.jwt_cutoff``) on the gateway's hot path.

Three figures; nothing is asserted (they depend on the machine):

1. ``Authenticator.authenticate`` for a JWT, per call: signature check plus the vendor's cut,
   read from the cache (the store is read once per ``cache_ttl``);
2. the cached cut look-up alone, per call (what the kill switch adds to every JWT request);
3. one client-secret fingerprint (HMAC-SHA256 under a key derived from jwt_keys), what a
   config load pays per vendor whose secret this process has not matched yet.

Best of ``--repeat`` runs of ``--calls`` calls each (the least disturbed by other work).

    python bench/jwt_auth.py [--calls 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.config import VendorConfig
from proxy.gateway.inbound import Authenticator, encode_jwt
from proxy.gateway.jwt_cutoff import fingerprint
from proxy.store.sqlite import SqliteStore

KEY = "bench-jwt-key-0123456789abcdef0123456789"


async def measure(calls: int, repeat: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as workdir:
        store = SqliteStore(f"{workdir}/store.db")
        await store.open()
        try:
            auth = Authenticator(store, 3600.0)
            vendors = {"acme": VendorConfig(name="acme", client_secret="x" * 32)}
            header = "Bearer " + encode_jwt("acme", frozenset(), KEY, ttl=3600)
            await auth.authenticate(header, vendors, (KEY,))  # the cut is cached from here
            best_auth = best_cut = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                for _ in range(calls):
                    await auth.authenticate(header, vendors, (KEY,))
                best_auth = min(best_auth, (time.perf_counter() - started) / calls)
                started = time.perf_counter()
                for _ in range(calls):
                    await auth.jwt_cutoff("acme")
                best_cut = min(best_cut, (time.perf_counter() - started) / calls)
        finally:
            await store.close()
    best_fp = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fingerprint("a-client-secret-of-some-length-0123456", (KEY,))
        best_fp = min(best_fp, time.perf_counter() - started)
    return best_auth, best_cut, best_fp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    per_auth, per_cut, per_fp = asyncio.run(measure(args.calls, args.repeat))
    print(f"JWT authenticate (signature + cached cut): {per_auth * 1e6:8.1f} us/call")
    print(
        f"  the cached cut look-up alone:            {per_cut * 1e6:8.2f} us/call "
        f"({per_cut / per_auth:.1%} of the above)"
    )
    print(f"client_secret fingerprint (HMAC-SHA256):   {per_fp * 1e6:8.1f} us per vendor")


if __name__ == "__main__":
    main()
