"""Chaos under load: one bounded run of the failures a real deployment meets (README
"Operations"), every process on this machine's loopback.

    python3 bench/chaos.py [--clients 12] [--window 12]

A proxy (``serve --workers 2``) on a Redis Sentinel store (a master, a replica, three
sentinels) serves steady vendor traffic over 4 sandbox districts (three from the TOML file,
one from the store) while, in turn:

1. ``reset``   district 1 resets connections mid-body (it also takes the writes);
2. ``hang``    district 2 never answers;
3. ``redis``   the Redis master is SIGKILLed, Sentinel promotes the replica, the dead node
               comes back as a replica;
4. ``sighup``  the supervisor gets SIGHUP ten times a second for 5 s;
5. ``renew``   district 4's connection gets new credentials (``PUT
               /admin/connections/{appId}/credentials``) while the district accepts both;
6. ``worker``  a worker is SIGKILLed (the standby takes its place).

Asserted over the whole run, exit 1 on any breach: no 500; every 200 body byte-identical to
what the district itself answers (fetched directly, signed); no write sent to the district
twice; each process's RSS within 20 MiB of its size after warm-up; every error a vendor saw is
one SPEC names for the fault of that window (the reset district: 502 or a broken transfer;
the hung district: 504, or 503 once its circuit opens; the store: 503 with Retry-After for a
token not seen before, never for one in use; a dead worker: the connections it held). The
tally (requests and statuses by window, retries, failovers) is printed at the end. The run
stops by itself after about ``8 x window`` seconds, plus start-up and the hung district's
circuit cooldown (30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client  # noqa: E402

from proxy.sandbox import SandboxOptions  # noqa: E402
from proxy.sandbox.server import RunningSandbox, start_sandbox  # noqa: E402
from proxy.store.crypto import new_key  # noqa: E402
from tests.sentinel_cluster import SentinelCluster  # noqa: E402
from tests.served import Served, wait_ready  # noqa: E402
from tests.support import ADMIN_TOKEN, free_port, toml_dumps  # noqa: E402

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
APPS = ("app-1", "app-2", "app-3", "app-4")  # app-4 lives in the store, not the TOML file
PAGE = "v1p1/users?limit=20"
RSS_SLACK = 20 * 1024 * 1024
BROKEN = -1  # the head arrived, the body broke off (a district reset mid-transfer)
DROPPED = 0  # no HTTP answer at all (a dead worker's connection)
# What SPEC names for each fault, on the district (or anywhere, None) that fault concerns.
ALLOWED: dict[str, dict[str | None, set[int]]] = {
    "warmup": {},
    "reset": {"app-1": {502, BROKEN}},
    "hang": {"app-2": {504, 503}},
    "redis": {},  # cold tokens are tallied apart: 503 + Retry-After only while no master
    "sighup": {},
    "renew": {},
    "worker": {None: {DROPPED}},
    "cooldown": {},
}


@dataclass
class Tally:
    window: str = "warmup"
    statuses: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    breaches: list[str] = field(default_factory=list)
    requests: int = 0
    writes: int = 0
    cold: collections.Counter[str] = field(default_factory=collections.Counter)
    failovers: int = 0
    reloads: int = 0
    received: dict[str, int] = field(default_factory=dict)

    def record(self, window: str, app: str, status: int, *, write: bool = False) -> None:
        """One answer, counted in the window it started in; an error is allowed if the fault
        of that window or of the one it ended in explains it (a request in flight when a
        fault starts meets it)."""
        ended = self.window
        self.requests += 1
        self.writes += write
        label = {BROKEN: "broken", DROPPED: "dropped"}.get(status, str(status))
        self.statuses[window][f"{app}:{label}"] += 1
        ok = {201, 200} if write else {200}
        if status in ok:
            return
        allowed = set()
        for name in {window, ended}:
            allowed |= ALLOWED[name].get(app, set()) | ALLOWED[name].get(None, set())
        if status not in allowed or status == 500:
            self.breaches.append(f"{window}: {app} {'PUT' if write else 'GET'} -> {label}")


def _signed_get(sandbox: RunningSandbox, rest: str) -> tuple[str, dict[str, str]]:
    url = f"{sandbox.base_url}/ims/oneroster/{rest}"
    client = Client(
        sandbox.key, client_secret=sandbox.secret, signature_method=SIGNATURE_HMAC_SHA256
    )
    uri, headers, _ = client.sign(url, http_method="GET")
    return uri, headers


async def _district_body(session: aiohttp.ClientSession, sandbox: RunningSandbox) -> bytes:
    uri, headers = _signed_get(sandbox, PAGE)
    async with session.get(uri, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _proxy_pids(proc: Served) -> list[int]:
    pids = [proc.process.pid]
    pids += [line["pid"] for line in proc.ready_workers().values()]
    return pids


async def main(args: argparse.Namespace) -> int:
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"orp-chaos-{os.getpid()}"
    work.mkdir(parents=True)
    started = time.monotonic()
    print("starting: 4 districts, a Sentinel deployment, serve --workers 2 ...", flush=True)
    sandboxes = [await start_sandbox(SandboxOptions(record_limit=None)) for _ in APPS]
    cluster = await asyncio.to_thread(SentinelCluster().start)
    proc: Served | None = None
    try:
        doc: dict[str, Any] = {
            "server": {
                "listen": f"127.0.0.1:{free_port()}",
                "upstream_timeout": "2s",
                "drain_timeout": "5s",
            },
            "admin": {"listen": f"127.0.0.1:{free_port()}", "token": ADMIN_TOKEN},
            "store": {"url": cluster.url, "cache_ttl": "2s", "secret_keys": [new_key()]},
            "vendors": {"acme": {}},
            "districts": {
                f"d{i + 1}": {"base_url": s.base_url, "auth": "oauth1"}
                for i, s in enumerate(sandboxes[:3])
            },
            "connections": {
                app: {
                    "vendor": "acme",
                    "district": f"d{i + 1}",
                    "key": sandboxes[i].key,
                    "secret": sandboxes[i].secret,
                    "scopes": ["roster.readonly", "gradebook.createput"],
                }
                for i, app in enumerate(APPS[:3])
            },
        }
        config = work / "proxy.toml"
        config.write_text(toml_dumps(doc))
        proc = Served(config, workers=2)
        await wait_ready(proc, 2)
        try:
            code = await _run(args, proc, sandboxes, cluster)
        finally:
            (work / "proxy.log").write_text("\n".join(proc.raw) + "\n")
            print(f"proxy log: {work / 'proxy.log'}")
        print(f"total wall time {time.monotonic() - started:.0f}s")
        return code
    finally:
        if proc is not None:
            proc.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.process.wait, 20)
            finally:
                proc.stop()
        await asyncio.to_thread(cluster.close)
        for sandbox in sandboxes:
            await sandbox.close()


async def _run(
    args: argparse.Namespace,
    proc: Served,
    sandboxes: list[RunningSandbox],
    cluster: SentinelCluster,
) -> int:
    tally = Tally()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # aiohttp re-sends a GET once when its connection drops (RFC 9112 9.3.1); vendors'
        # clients may not, so the tally counts what the proxy itself lets through.
        session._retry_connection = False
        admin = proc.admin_url

        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with session.request(method, f"{admin}{path}", json=body, headers=ADMIN) as r:
                return r.status, await r.json(content_type=None)

        d4 = sandboxes[3]
        status, body = await call(
            "POST", "/admin/districts", {"name": "d4", "base_url": d4.base_url}
        )
        assert status in (200, 201), body
        status, body = await call(
            "POST",
            "/admin/connections",
            {
                "app_id": "app-4",
                "vendor": "acme",
                "district": "d4",
                "key": d4.key,
                "secret": d4.secret,
                "scopes": ["roster.readonly"],
            },
        )
        assert status in (200, 201), body
        status, body = await call("POST", "/admin/vendors/acme/tokens", {})
        assert status in (200, 201), body
        hot = body["token"]
        cold = []
        for _ in range(24):
            status, body = await call("POST", "/admin/vendors/acme/tokens", {})
            assert status in (200, 201), body
            cold.append(body["token"])
        reference = {
            app: await _district_body(session, s) for app, s in zip(APPS, sandboxes, strict=True)
        }
        stop = asyncio.Event()

        async def get(app: str, token: str) -> tuple[int, bytes, str | None]:
            url = f"{proc.url}/{app}/ims/oneroster/{PAGE}"
            try:
                async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                    try:
                        data = await r.read()
                    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                        return BROKEN, b"", None
                    return r.status, data, r.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError):
                return DROPPED, b"", None

        async def reader(n: int) -> None:
            i = n
            while not stop.is_set():
                app = APPS[i % len(APPS)]
                i += 1
                window = tally.window
                status, data, _ = await get(app, hot)
                if status == 200 and data != reference[app]:
                    tally.breaches.append(f"{window}: {app} 200 body differs from the district's")
                tally.record(window, app, status)

        async def writer() -> None:
            while not stop.is_set():
                window = tally.window
                url = f"{proc.url}/app-1/ims/oneroster/v1p1/lineItems/chaos-{uuid.uuid4()}"
                try:
                    async with session.put(
                        url,
                        json={"lineItem": {"title": "chaos"}},
                        headers={"Authorization": f"Bearer {hot}"},
                    ) as r:
                        try:
                            await r.read()
                            status = r.status
                        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                            status = BROKEN
                except (aiohttp.ClientError, TimeoutError):
                    status = DROPPED
                tally.record(window, "app-1", status, write=True)
                await asyncio.sleep(0.2)

        rss_at: dict[int, int] = {}
        rss_peak: dict[int, int] = {}

        async def sample_rss() -> None:
            while not stop.is_set():
                for pid in _proxy_pids(proc):
                    value = _rss(pid)
                    if value is not None and pid in rss_at:
                        rss_peak[pid] = max(rss_peak.get(pid, 0), value)
                await asyncio.sleep(0.5)

        tasks = [asyncio.create_task(reader(n)) for n in range(args.clients)]
        tasks += [asyncio.create_task(writer()), asyncio.create_task(sample_rss())]
        w = args.window

        async def window(name: str, seconds: float) -> None:
            tally.window = name
            print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
            await asyncio.sleep(seconds)

        await window("warmup", w)
        for pid in _proxy_pids(proc):
            value = _rss(pid)
            if value is not None:
                rss_at[pid] = value

        # Each window is named before its fault starts, so a request that meets the fault is
        # counted in its window, and it lasts until the fault's after-effects are over.
        tally.window = "reset"
        sandboxes[0].faults.reset_mid_body = True
        await window("reset", w)
        sandboxes[0].faults.reset_mid_body = False
        await asyncio.sleep(1)

        tally.window = "hang"
        sandboxes[1].faults.hang_paths = ["*"]
        await window("hang", w)
        sandboxes[1].faults.hang_paths = []
        # In-flight hangs time out, then the open circuit answers 503 until its cooldown lets
        # a probe through (docs/http-api.md: 503 + Retry-After); the window ends once the
        # district serves. Each worker has its own breaker: wait until none is open (/metrics shows
        # the max).
        healed = time.monotonic()
        while time.monotonic() - healed < 60:
            async with session.get(f"{admin}/metrics") as r:
                if _family(await r.text(), "oneroster_proxy_circuit_open", district="d2") == 0:
                    break
            await asyncio.sleep(0.5)
        print(f"  hang: district 2 served again {time.monotonic() - healed:.1f}s after", flush=True)

        tally.window = "redis"
        print(f"[{time.strftime('%H:%M:%S')}] redis", flush=True)
        old = await asyncio.to_thread(cluster.kill_master)
        killed = time.monotonic()
        cold_answers: list[tuple[float, int, str | None]] = []

        async def cold_user() -> None:
            for token in cold:
                status, _, retry_after = await get(APPS[len(cold_answers) % 3], token)
                cold_answers.append((time.monotonic(), status, retry_after))
                await asyncio.sleep(0.25)

        cold_task = asyncio.create_task(cold_user())
        await asyncio.to_thread(cluster.wait_for_failover, old, 30.0)
        promoted = time.monotonic()
        tally.failovers += 1
        await cold_task
        await asyncio.to_thread(cluster.restore)
        await asyncio.to_thread(cluster.wait_replicated, 60.0)
        for at, status, retry_after in cold_answers:
            tally.cold[str(status)] += 1
            if status == 503 and retry_after and killed <= at <= promoted + 10:
                continue
            if status != 200:
                tally.breaches.append(f"redis: a new token got {status} outside the failover")
        print(f"  failover: promoted {promoted - killed:.1f}s after the kill", flush=True)

        tally.window = "sighup"
        print(f"[{time.strftime('%H:%M:%S')}] sighup", flush=True)
        for _ in range(50):
            proc.process.send_signal(signal.SIGHUP)
            tally.reloads += 1
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)

        tally.window = "renew"
        print(f"[{time.strftime('%H:%M:%S')}] renew", flush=True)
        new_key_, new_secret = f"renewed-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        d4.accept_credentials(new_key_, new_secret)
        status, body = await call(
            "PUT", "/admin/connections/app-4/credentials", {"key": new_key_, "secret": new_secret}
        )
        if status != 200:
            tally.breaches.append(f"renew: the admin API answered {status}: {body}")
        renewed_at = len(d4.recorded)
        await asyncio.sleep(w)
        signed_new = sum(
            1
            for r in d4.recorded[renewed_at:]
            if any(k.lower() == "authorization" and new_key_ in v for k, v in r.headers)
        )
        if not signed_new:
            tally.breaches.append("renew: district 4 never saw the new credentials")
        print(f"  renew: {signed_new} requests signed with the new key since", flush=True)

        tally.window = "worker"
        victim = proc.ready_workers()[0]
        os.kill(victim["pid"], signal.SIGKILL)
        await window("worker", w)
        await window("cooldown", w)
        stop.set()
        await asyncio.gather(*tasks)

        # No write reached the district twice.
        puts = collections.Counter(r.path for r in sandboxes[0].recorded if r.method == "PUT")
        twice = [path for path, n in puts.items() if n > 1]
        if twice:
            tally.breaches.append(f"{len(twice)} writes reached the district twice")
        # Each long-lived process stayed within RSS_SLACK of its size after warm-up.
        grown = {pid: rss_peak[pid] - rss_at[pid] for pid in rss_peak}
        for pid, growth in grown.items():
            if growth > RSS_SLACK:
                tally.breaches.append(f"pid {pid} grew {growth / 2**20:.1f} MiB after warm-up")
        # Fetched directly while the reference bodies were made: one request per district.
        tally.received = {app: len(s.recorded) - 1 for app, s in zip(APPS, sandboxes, strict=True)}
        async with session.get(f"{admin}/metrics") as r:
            metrics = await r.text()
    _print_tally(tally, puts, grown, metrics)
    return 1 if tally.breaches else 0


def _family(metrics: str, name: str, **labels: str) -> float:
    """The sum of one family's samples with these labels, from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for fam in text_string_to_metric_families(metrics)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _print_tally(
    tally: Tally, puts: collections.Counter[str], grown: dict[int, int], metrics: str
) -> None:
    def total(name: str, **labels: str) -> float:
        return _family(metrics, name, **labels)

    print("\n== chaos tally ==")
    print(
        f"requests {tally.requests} (writes {tally.writes}); failovers {tally.failovers}; "
        f"SIGHUPs {tally.reloads}"
    )
    for window, counts in tally.statuses.items():
        by_status: collections.Counter[str] = collections.Counter()
        for key, n in counts.items():
            by_status[key.split(":")[1]] += n
        detail = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()) if not k.endswith(":200"))
        print(
            f"  {window:9} {dict(sorted(by_status.items()))}" + (f"  [{detail}]" if detail else "")
        )
    print(f"  new tokens during the failover: {dict(tally.cold)}")
    print(
        f"  writes: {len(puts)} distinct, reaching the district at most "
        f"{max(puts.values(), default=0)} time(s) each"
    )
    kinds = {
        k: total("oneroster_proxy_upstream_errors_total", kind=k)
        for k in ("connect", "timeout", "reset", "token")
    }
    print(f"  upstream errors (proxy metrics): {kinds}")
    sent: collections.Counter[str] = collections.Counter()
    for counts in tally.statuses.values():
        for key, n in counts.items():
            sent[key.split(":")[0]] += n
    print("  district requests received vs vendor requests (the excess is GET retries):")
    for app, received in tally.received.items():
        print(
            f"    {app}: {received} received, {sent[app]} sent by vendors, "
            f"{max(0, received - sent[app])} retries"
        )
    print(
        f"  config reloads: ok {total('oneroster_proxy_config_reloads_total', result='ok'):.0f},"
        f" error {total('oneroster_proxy_config_reloads_total', result='error'):.0f}"
    )
    print(
        f"  RSS growth after warm-up (MiB): "
        f"{ {pid: round(g / 2**20, 1) for pid, g in grown.items()} }"
    )
    if tally.breaches:
        print(f"\nBREACHES ({len(tally.breaches)}):")
        for line in collections.Counter(tally.breaches).most_common(20):
            print(f"  {line[1]} x {line[0]}")
    else:
        print("\nno breach: every error was one SPEC names for its fault")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=12, help="concurrent vendor readers")
    parser.add_argument("--window", type=float, default=12.0, help="seconds per fault window")
    sys.exit(asyncio.run(main(parser.parse_args())))
