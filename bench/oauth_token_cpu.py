"""CPU per ``POST /oauth/token`` (client credentials), measured on the serving process.

Starts ``oneroster-proxy serve`` (one process, sqlite store, one vendor with a 40-character
``client_secret``) from ``--repo`` (default: this checkout; give another checkout to compare
versions), makes ``--calls`` token requests one after another on one keep-alive connection,
and reads the server's user + system CPU seconds from ``/proc/<pid>/stat`` before and after:
the figure is the server's CPU per call, whatever the client costs: the median of ``--repeat``
rounds, with the lowest and highest.
Also prints what one config load pays per vendor for the store's client_secret fingerprint,
as the checkout at ``--repo`` computes it. Nothing is asserted.

    python bench/oauth_token_cpu.py [--calls 2000] [--repeat 3] [--repo PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-client-secret-0123456789abcdef0123"
JWT_KEY = "bench-jwt-key-0123456789abcdef0123456789"


def _importing(repo: Path, code: str) -> str:
    """``code`` run with ``proxy`` imported from ``repo``, not from an editable install (whose
    import hook would otherwise win over PYTHONPATH)."""
    return (
        f"import sys; sys.path.insert(0, {str(repo.resolve())!r}); "
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n" + code
    )


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _config(folder: str, port: int, admin: int) -> str:
    path = f"{folder}/proxy.toml"
    Path(path).write_text(
        f"""[server]
listen = "127.0.0.1:{port}"
jwt_keys = ["{JWT_KEY}"]
[admin]
listen = "127.0.0.1:{admin}"
[store]
url = "sqlite://{folder}/store.db"
[vendors.acme]
client_secret = "{SECRET}"
[districts.springfield]
base_url = "http://127.0.0.1:9"
[connections.app-7]
vendor = "acme"
district = "springfield"
key = "k"
secret = "s"
scopes = ["roster-core.readonly"]
"""
    )
    return path


async def _measure(url: str, pid: int, calls: int, repeat: int) -> list[float]:
    body = {"grant_type": "client_credentials", "client_id": "acme", "client_secret": SECRET}
    rounds: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm-up
            async with session.post(f"{url}/oauth/token", data=body) as resp:
                assert resp.status == 200, await resp.text()
        for _ in range(repeat):
            before = _cpu(pid)
            for _ in range(calls):
                async with session.post(f"{url}/oauth/token", data=body) as resp:
                    await resp.read()
            rounds.append((_cpu(pid) - before) / calls)
    return rounds


def _fingerprint_cost(repo: Path) -> str:
    code = (
        "import time, inspect\n"
        "from proxy.gateway.jwt_cutoff import fingerprint\n"
        "p = inspect.signature(fingerprint).parameters\n"
        f"args = (['{JWT_KEY}'],) if 'keys' in p else ()\n"
        "best = min((lambda t: (fingerprint('x' * 40, *args), time.perf_counter() - t)[1])"
        "(time.perf_counter()) for _ in range(5))\n"
        "print(f'{best * 1e3:.3f} ms')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", _importing(repo, code)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
        check=False,
    )
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=ROOT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port, admin = _port(), _port()
        config = _config(folder, port, admin)
        env = {**os.environ, "PYTHONPATH": str(args.repo.resolve())}
        proc = subprocess.Popen(
            [sys.executable, "-c", _importing(args.repo, "from proxy.cli import main; main()"),
             "serve", "--config", config],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("serve did not start") from None
                    time.sleep(0.1)
            per_call = asyncio.run(
                _measure(f"http://127.0.0.1:{port}", proc.pid, args.calls, args.repeat)
            )
        finally:
            proc.terminate()
            proc.wait(20)
    print(f"code: {args.repo.resolve()}")
    mid = statistics.median(per_call)
    print(
        f"POST /oauth/token, server CPU: {mid * 1e6:8.1f} us per call (median of {len(per_call)}"
        f" rounds; {min(per_call) * 1e6:.1f}-{max(per_call) * 1e6:.1f})"
    )
    print(f"client_secret fingerprint at config load: {_fingerprint_cost(args.repo)} per vendor")


if __name__ == "__main__":
    main()
