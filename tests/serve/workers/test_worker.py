"""A worker of ``serve --workers 2`` killed under load by 64 concurrent clients.

Every worker accepts from the one listening socket the supervisor holds, so a connection the
kernel queued but no worker accepted yet is never lost with a worker. The victim is first
frozen (SIGSTOP: it accepts nothing more, as a hung worker), then killed (SIGKILL): every request
that started after the freeze must succeed (the other worker takes the whole queue), and only
requests the victim had accepted before it may fail. The standby takes the dead worker's place
and serves within 2 s, and ``/metrics`` still sums every worker, the dead one included.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.served import Served, cli, wait_ready
from tests.support import base_config, free_port, toml_dumps

CLIENTS = 64
REPLACED_WITHIN = 2.0  # SPEC (issue): the replacement worker serves within 2 s


@dataclass
class Outcome:
    started: float
    ended: float
    status: int  # 0: the connection failed


def _requests_200(text: str) -> float:
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "oneroster_proxy_requests_total" and s.labels.get("code") == "200"
    )


@pytest.mark.timeout(180)
async def test_a_killed_worker_loses_only_the_requests_it_had_accepted(
    sandbox: Any, tmp_path: Path
) -> None:
    doc = base_config(tmp_path, sandbox, drain_timeout="5s")
    doc["server"]["listen"] = f"127.0.0.1:{free_port()}"
    doc["admin"]["listen"] = f"127.0.0.1:{free_port()}"
    config = tmp_path / "proxy.toml"
    config.write_text(toml_dumps(doc))
    token = (await cli("tokens", "issue", "acme", "--config", str(config))).split()[-1]
    proc = Served(config, workers=2)
    try:
        await wait_ready(proc, 2)
        await _kill_under_load(proc, token)
    finally:
        proc.stop()


async def _kill_under_load(proc: Served, token: str) -> None:
    url = f"{proc.url}/app-7/ims/oneroster/v1p1/users?limit=1"
    headers = {"Authorization": f"Bearer {token}"}
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    # A new connection per request: every request goes through the listening socket's queue.
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # aiohttp re-sends a GET once when its connection drops (RFC 9112 9.3.1): that would
        # hide the very failures this test counts.
        session._retry_connection = False

        async def client() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    async with session.get(url, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                outcomes.append(Outcome(started, time.monotonic(), status))

        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        await asyncio.sleep(1.5)
        victim = proc.ready_workers()[0]
        # The victim takes its share of the load (the kernel wakes both acceptors).
        victim_served = await _worker_200s(victim["admin_socket"])
        assert victim_served > 0
        os.kill(victim["pid"], signal.SIGSTOP)
        frozen_at = time.monotonic()
        await asyncio.sleep(0.5)  # connections keep arriving while the victim accepts none
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        await proc.wait_for(
            "the replacement", lambda: proc.ready_workers()[0]["pid"] != victim["pid"]
        )
        replaced_after = time.monotonic() - killed_at
        replacement = proc.ready_workers()[0]
        await asyncio.sleep(1.5)  # the replacement takes its share of the load
        stop.set()
        await asyncio.gather(*clients)

        failed = [o for o in outcomes if o.status != 200]
        # No HTTP error at all: a failure is a connection the dead worker had accepted.
        assert {o.status for o in failed} <= {0}, sorted({o.status for o in failed})
        late = [o for o in failed if o.started >= frozen_at]
        assert not late, f"{len(late)} requests that started after the freeze failed"
        assert len(failed) <= CLIENTS  # at most one in flight per client
        served_after = [o for o in outcomes if o.started > killed_at and o.status == 200]
        assert len(served_after) > CLIENTS
        print(
            f"\nworker kill: victim served {victim_served:.0f} before the freeze; "
            f"{len(outcomes)} requests, {len(failed)} failed (all accepted by "
            f"the victim before it froze), replacement ready {replaced_after:.2f}s after "
            f"the kill (interpreter start to ready {replacement['started_s']}s)"
        )
        # Measured generously: from the test's SIGKILL to the test reading the supervisor's
        # "worker ready" line for the standby that took the dead worker's place.
        assert replaced_after <= REPLACED_WITHIN, replaced_after
        assert proc.logged("standby worker takes over", pid=replacement["pid"])

        # The replacement serves, and /metrics still sums every worker, the dead one included.
        async with aiohttp.ClientSession() as plain:
            async with plain.get(f"{proc.admin_url}/metrics") as resp:
                before = _requests_200(await resp.text())
            for _ in range(40):
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 200
            async with plain.get(f"{proc.admin_url}/metrics") as resp:
                after = _requests_200(await resp.text())
        assert after - before == 40
        ok = sum(1 for o in outcomes if o.status == 200)
        assert ok - len(failed) <= before <= ok + len(failed)
        assert await _worker_200s(replacement["admin_socket"]) > 0


async def _worker_200s(admin_socket: str) -> float:
    """What one worker alone counted, from its private admin socket."""
    own = aiohttp.UnixConnector(path=admin_socket)
    async with aiohttp.ClientSession(connector=own) as mine, mine.get("http://worker/metrics") as r:
        return _requests_200(await r.text())
