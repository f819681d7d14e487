"""``oneroster-proxy demo``: the sandbox district and a proxy wired to it, in one process.

docs/commands.md ``demo``: a temporary config and sqlite store, the gateway on ``--port`` (default
8080), the sandbox and the admin listener on free ports, a token issued, and a ``curl`` line
that works as pasted. Ctrl-C or SIGTERM ends everything it started (all of it lives in this
process) and removes the temporary directory, with exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
import shutil
import signal
import sys
from pathlib import Path

from proxy import config as config_mod
from proxy import tokens
from proxy.sandbox import SandboxOptions
from proxy.sandbox.server import start_sandbox
from proxy.serve.rundirs import make_run_dir
from proxy.serve.server import bind_socket, start
from proxy.store import open_store

VENDOR = "demo-vendor"
APP_ID = "demo-district"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def demo_config_text(
    *,
    port: int,
    base_url: str,
    key: str,
    secret: str,
    store_path: str,
    admin_token: str,
    auth: str,
    token_url: str | None,
) -> str:
    district_auth = f'auth = "{auth}"\n'
    if token_url:
        district_auth += f"token_url = {_toml_string(token_url)}\n"
    return f"""# Written by `oneroster-proxy demo`; deleted when the demo stops.
[server]
listen = "127.0.0.1:{port}"
# The demo's district is the sandbox on loopback: intake links may reach it.
intake_private_networks = true

[admin]
listen = "127.0.0.1:0"
token = {_toml_string(admin_token)}

[store]
url = {_toml_string("sqlite://" + store_path)}

[vendors.{VENDOR}]

[districts.sandbox]
base_url = {_toml_string(base_url)}
{district_auth}
[connections.{APP_ID}]
vendor = "{VENDOR}"
district = "sandbox"
key = {_toml_string(key)}
secret = {_toml_string(secret)}
scopes = ["roster.readonly", "roster-demographics.readonly", "resource.readonly",
          "gradebook.readonly", "gradebook.createput", "gradebook.delete"]
"""


async def _run(port: int, auth: str, tmp: Path) -> int:
    sandbox = await start_sandbox(SandboxOptions(auth=auth))  # type: ignore[arg-type]
    try:
        admin_token = secrets.token_urlsafe(24)
        config_path = tmp / "demo.toml"
        config_path.write_text(
            demo_config_text(
                port=port,
                base_url=sandbox.base_url,
                key=sandbox.key,
                secret=sandbox.secret,
                store_path=str(tmp / "store.db"),
                admin_token=admin_token,
                auth=auth,
                token_url=sandbox.token_url,
            )
        )
        config = config_mod.load(str(config_path))
        store = open_store(config.store.url)
        await store.open()
        try:
            issued = await tokens.issue(store, VENDOR, ttl=None, interface="cli")
        finally:
            await store.close()
        try:
            sock = bind_socket(config.server.listen)
        except OSError as exc:
            print(
                f"error: cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port",
                file=sys.stderr,
            )
            return 1
        running = await start(config, gateway_sock=sock)
        base = f"http://127.0.0.1:{running.gateway_port}"
        url = f"{base}/{APP_ID}/ims/oneroster/v1p1/users?limit=2"
        print(f"sandbox district: {sandbox.base_url} ({auth})")
        print(f"proxy gateway:    {base}")
        print(
            f"admin listener:   http://127.0.0.1:{running.admin_port} (admin token: {admin_token})"
        )
        print(f"config:           {config_path}")
        print(f"vendor token:     {issued.token}")
        print()
        print("Try it (Ctrl-C stops the demo):")
        print(f"curl -H {shlex.quote('Authorization: Bearer ' + issued.token)} {shlex.quote(url)}")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await running.stop(2.0)
        return 0
    finally:
        await sandbox.close()


#: The demo's run folder (admin token, district secret): ``<temp>/oneroster-proxy-demo-<pid>...``.
DEMO_PREFIX = "oneroster-proxy-demo-"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(*, port: int = 8080, auth: str = "oauth1") -> int:
    """Run until Ctrl-C or SIGTERM, at any moment (starting up included): then exit 0 with
    the temporary directory removed, since it holds an admin token and a district secret."""
    # Until the event loop takes SIGTERM over (once serving), it interrupts like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    # A demo killed by SIGKILL could not remove its folder: the next demo does (not a live one's).
    tmp = make_run_dir(DEMO_PREFIX)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(_run(port, auth, Path(tmp)))
        return 0
    finally:
        # SECURITY: the removal of the secrets must not itself be cut short by a signal.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
