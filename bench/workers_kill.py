"""A worker SIGKILLed under load: requests lost and the time until a replacement serves, for
our supervisor (``serve --workers 2``) and, when gunicorn is importable, for gunicorn with
aiohttp's worker serving the same gateway app (docs/workers.md says what decided it).

    python3 bench/workers_kill.py [--rounds 3] [--clients 8] [--only ours|gunicorn|preload]

Everything runs on loopback: one sandbox district (in this process), the server under test
as a subprocess, and ``--clients`` vendor clients each sending ``GET .../users?limit=1`` on a
keep-alive connection, back to back. The clients never re-send a failed request (aiohttp's
silent retry on a stale keep-alive connection is off), so every request the dead worker
took with it is counted. Keep-alive connections stay where they were accepted, and the
survivor takes every reconnect while the replacement starts, so one more client (the prober)
sends a request on a new connection every 20 ms: that is how a replacement gets work, as it
does from vendors who connect afresh. One round:

1. start the server with two workers and wait until it answers;
2. ``--warmup`` seconds of load, then SIGKILL one worker;
3. keep the load until the replacement has served a request, plus one second (at most
   ``--window`` seconds after the kill, and never more than ``--max-requests`` in all);
4. stop the server (SIGTERM).

Reported per round and as the median (min-max) over the rounds:

- ``held``: the vendor connections the killed worker had open (``ss -p``), the requests it
  could take with it: one in flight or next on each;
- ``lost``: requests that got no HTTP answer (connection reset / server disconnected) or a
  status other than 200;
- ``replaced_s``: from the SIGKILL until the new process has served its first request.
  Ours: the replacement named by the supervisor's ``worker ready`` line is asked on its
  private admin socket until its ``oneroster_proxy_requests_total`` is above 0. gunicorn: the
  bench's app factory stamps each response with the pid that served it; the first response
  from a pid that was not there before. Both are polled or seen at ~20 ms resolution.

Then, once per variant, the reload that goes wrong: the config file gains a connection that
names an unknown vendor, the master gets SIGHUP, and one client probes every 50 ms for
``BROKEN_WINDOW`` seconds; printed: whether the server is still up, and the statuses seen.

Variants: ``ours`` (``oneroster-proxy serve --workers 2``: the standby takes the dead
worker's place); ``gunicorn`` (``gunicorn -k aiohttp.GunicornWebWorker -w 2``, the app
imported in each worker after the fork, gunicorn's default); ``preload`` (the same with
``--preload``: modules imported once in the arbiter, so a new worker only forks). gunicorn
is not a dependency of the project: ``pip install gunicorn`` into your own venv to compare.
Prints figures and asserts nothing: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PID_HEADER = "X-Bench-Pid"
CONFIG_ENV = "BENCH_WORKERS_CONFIG"
USERS = "/app-7/ims/oneroster/v1p1/users?limit=1"
BROKEN_WINDOW = 5.0  # seconds of probes after the SIGHUP that reads a broken file
PROBE_PAUSE = 0.02  # the prober's pause between requests, each on a new connection


async def gunicorn_app() -> web.Application:
    """The gateway app as ``oneroster-proxy serve`` builds it, for aiohttp's gunicorn worker;
    each response names the pid that served it."""
    from proxy import config as config_mod
    from proxy.app import create_app
    from proxy.store import open_store

    config = config_mod.load(os.environ[CONFIG_ENV])
    app = create_app(config, open_store(config.store.url))

    async def stamp(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[PID_HEADER] = str(os.getpid())

    app.on_response_prepare.append(stamp)
    return app


@dataclass
class Round:
    variant: str
    ok: int = 0
    lost: collections.Counter[str] = field(default_factory=collections.Counter)
    replaced_s: float | None = None
    held: int = 0  # vendor connections the victim had open when it was killed
    seconds: float = 0.0

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


class Server:
    """The server under test: its url, its worker pids, and how to see a replacement serve."""

    def __init__(self, variant: str, config: Path, port: int, env: dict[str, str]) -> None:
        from tests.served import Served

        self.variant = variant
        self.url = f"http://127.0.0.1:{port}"
        self.first_seen: dict[int, float] = {}  # pid -> when a response named it (gunicorn)
        self.served: Served | None = None
        if variant == "ours":
            self.served = Served(config, workers=2)
            self.process = self.served.process
            return
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "aiohttp.GunicornWebWorker",
            "-w",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            "--chdir",
            str(REPO / "bench"),
            *(["--preload"] if variant == "preload" else []),
            "workers_kill:gunicorn_app",
        ]
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=dict(env, **{CONFIG_ENV: str(config)}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self, token: str) -> None:
        from tests.served import wait_ready

        if self.served is not None:
            await wait_ready(self.served, 2)
            return
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.process.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn never answered"
                if len(_children(self.process.pid)) == 2:
                    try:
                        async with session.get(self.url + USERS, headers=_auth(token)) as r:
                            if r.status == 200:
                                return
                    except aiohttp.ClientConnectionError:
                        pass
                await asyncio.sleep(0.1)

    def victim(self) -> int:
        if self.served is not None:
            return int(self.served.ready_workers()[0]["pid"])
        return min(_children(self.process.pid))

    async def replacement_serves(self, before: set[int]) -> float:
        """Block until a process not in ``before`` has served a request; when it was seen."""
        while True:
            if self.served is None:
                fresh = [t for pid, t in self.first_seen.items() if pid not in before]
                if fresh:
                    return min(fresh)
            else:
                line = self.served.ready_workers().get(0)
                if line is not None and line["pid"] not in before:
                    if await _requests_on(line["admin_socket"]) > 0:
                        return time.monotonic()
            await asyncio.sleep(0.02)

    def pids(self) -> set[int]:
        if self.served is not None:
            return {int(line["pid"]) for line in self.served.ready_workers().values()}
        return _children(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


async def _requests_on(socket_path: str) -> float:
    try:
        connector = aiohttp.UnixConnector(path=socket_path)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://worker/metrics") as resp,
        ):
            text = await resp.text()
    except (aiohttp.ClientError, OSError):
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "oneroster_proxy_requests_total"
    )


def _connections_of(pid: int, port: int) -> int:
    """Established connections to ``port`` that process ``pid`` holds (``ss -p``)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sum(f"pid={pid}," in line for line in out.splitlines())


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _config(here: Path, sandbox: Any) -> tuple[Path, int]:
    from tests.support import base_config, free_port, toml_dumps

    port = free_port()
    doc = base_config(here, sandbox, drain_timeout="5s")
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    doc["admin"]["listen"] = f"127.0.0.1:{free_port()}"
    config = here / "proxy.toml"
    config.write_text(toml_dumps(doc))
    return config, port


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


async def one_round(
    variant: str, sandbox: Any, args: argparse.Namespace, tmp: Path, n: int
) -> Round:
    from proxy.compat import disable_connection_retry
    from tests.served import cli

    here = tmp / f"{variant}-{n}"
    here.mkdir()
    config, port = _config(here, sandbox)
    token = (await cli("tokens", "issue", "acme", "--config", str(config))).strip().splitlines()[-1]
    server = Server(variant, config, port, _env())
    result = Round(variant)
    try:
        await server.ready(token)
        connector = aiohttp.TCPConnector(limit=args.clients)
        fresh = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            aiohttp.ClientSession(connector=fresh) as prober,
        ):
            disable_connection_retry(session)
            disable_connection_retry(prober)
            stop = asyncio.Event()
            sent = 0

            async def client(session: aiohttp.ClientSession, pause: float = 0.0) -> None:
                nonlocal sent
                while not stop.is_set() and sent < args.max_requests:
                    await asyncio.sleep(pause)
                    sent += 1
                    try:
                        async with session.get(server.url + USERS, headers=_auth(token)) as r:
                            await r.read()
                            pid = r.headers.get(PID_HEADER)
                            if pid is not None:
                                server.first_seen.setdefault(int(pid), time.monotonic())
                            if r.status == 200:
                                result.ok += 1
                            else:
                                result.lost[str(r.status)] += 1
                    except (aiohttp.ClientError, OSError) as exc:
                        result.lost[type(exc).__name__] += 1

            started = time.monotonic()
            clients = [asyncio.create_task(client(session)) for _ in range(args.clients)]
            clients.append(asyncio.create_task(client(prober, PROBE_PAUSE)))
            await asyncio.sleep(args.warmup)
            before = server.pids()
            victim = server.victim()
            result.held = _connections_of(victim, port)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            try:
                seen = await asyncio.wait_for(server.replacement_serves(before), args.window)
                result.replaced_s = seen - killed
                await asyncio.sleep(1.0)
            except TimeoutError:
                pass
            stop.set()
            await asyncio.gather(*clients)
            result.seconds = time.monotonic() - started
    finally:
        server.stop()
    return result


async def broken_reload(variant: str, sandbox: Any, tmp: Path) -> str:
    """SIGHUP to the master after a broken edit of the config file: what vendors see for the
    next ``BROKEN_WINDOW`` seconds, and whether the server is still up."""
    from tests.served import cli

    here = tmp / f"{variant}-hup"
    here.mkdir()
    config, port = _config(here, sandbox)
    token = (await cli("tokens", "issue", "acme", "--config", str(config))).strip().splitlines()[-1]
    server = Server(variant, config, port, _env())
    seen: collections.Counter[str] = collections.Counter()
    try:
        await server.ready(token)
        config.write_text(config.read_text() + '\n[connections.app-10]\nvendor = "nobody"\n')
        server.process.send_signal(signal.SIGHUP)
        until = time.monotonic() + BROKEN_WINDOW
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < until:
                try:
                    async with session.get(server.url + USERS, headers=_auth(token)) as r:
                        await r.read()
                        seen[str(r.status)] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    seen[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
        alive = server.process.poll() is None
    finally:
        server.stop()
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))
    return f"{variant:8} {'up' if alive else 'EXITED':7} {kinds}"


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


async def main(args: argparse.Namespace) -> int:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    variants = [args.only] if args.only else ["ours", "gunicorn", "preload"]
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        if args.only in (None, "gunicorn", "preload"):
            print("gunicorn is not installed here: measuring ours only")
        variants = [v for v in variants if v == "ours"]
    sandbox = await start_sandbox(SandboxOptions())
    results: dict[str, list[Round]] = {v: [] for v in variants}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.rounds):
                for variant in variants:  # interleaved, so a busy spell hits every variant
                    r = await one_round(variant, sandbox, args, Path(tmp), n)
                    results[variant].append(r)
                    kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.lost.items())) or "-"
                    replaced = "never" if r.replaced_s is None else f"{r.replaced_s:.3f}s"
                    print(
                        f"round {n + 1} {variant:8} ok {r.ok:6} held {r.held:3} "
                        f"lost {r.lost_total:4} "
                        f"({kinds}) replaced in {replaced} over {r.seconds:.1f}s",
                        flush=True,
                    )
            print()
            print(f"SIGHUP after a broken config edit, then {BROKEN_WINDOW:.0f} s of probes:")
            for variant in variants:
                print(await broken_reload(variant, sandbox, Path(tmp)), flush=True)
    finally:
        await sandbox.runner.cleanup()
    print()
    print(f"{args.rounds} rounds, {args.clients} keep-alive clients; median (min-max)")
    print(f"{'variant':9} {'held':12} {'lost requests':14} {'replaced_s':22} {'ok req/s':18}")
    for variant, rounds in results.items():
        held = _spread([float(r.held) for r in rounds], ".0f")
        lost = _spread([float(r.lost_total) for r in rounds], ".0f")
        replaced = _spread([r.replaced_s for r in rounds if r.replaced_s is not None], ".3f")
        never = sum(r.replaced_s is None for r in rounds)
        if never:
            replaced += f" +{never} never"
        rate = _spread([r.ok / r.seconds for r in rounds if r.seconds], ".0f")
        print(f"{variant:9} {held:12} {lost:14} {replaced:22} {rate:18}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the kill")
    parser.add_argument("--window", type=float, default=20.0, help="most seconds after the kill")
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--only", choices=["ours", "gunicorn", "preload"])
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
