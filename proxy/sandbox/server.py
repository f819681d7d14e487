"""Running the sandbox district: ``start_sandbox`` for tests and ``oneroster-proxy sandbox``.

Implements the ``sandbox`` row of docs/commands.md: the command prints
``base_url: ...``, ``key: ...``, ``secret: ...`` (``token_url: ...`` with OAuth2,
``vendor_authorization: ...`` with the Infinite Campus profile), each line flushed at once, then
serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import textwrap
from dataclasses import dataclass

from aiohttp import web

from proxy.sandbox.app import accept_credentials, create_sandbox_app, revoke_all_tokens
from proxy.sandbox.options import ALL_SCOPES, PROFILES, Faults, SandboxOptions, parse_versions
from proxy.sandbox.state import FAULTS, OPTIONS, RECORDED, RecordedRequest


@dataclass
class RunningSandbox:
    """A sandbox district listening on a loopback port."""

    base_url: str
    key: str
    secret: str
    token_url: str | None
    vendor_key: str | None
    vendor_secret: str | None
    app: web.Application
    runner: web.AppRunner

    @property
    def options(self) -> SandboxOptions:
        return self.app[OPTIONS]

    @property
    def faults(self) -> Faults:
        return self.app[FAULTS]

    @property
    def recorded(self) -> list[RecordedRequest]:
        return self.app[RECORDED]

    @property
    def vendor_authorization(self) -> str | None:
        return self.options.vendor_authorization

    def revoke_all_tokens(self) -> None:
        revoke_all_tokens(self.app)

    def accept_credentials(self, key: str, secret: str) -> None:
        accept_credentials(self.app, key, secret)

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_sandbox(
    options: SandboxOptions | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSandbox:
    """Start a sandbox district on ``host:port`` (0: a free port) and return its coordinates."""
    app = create_sandbox_app(options)
    resolved = app[OPTIONS]
    # A short shutdown timeout: requests held by the hang fault must not hold up close().
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{bound_port}{resolved.base_path}"
    return RunningSandbox(
        base_url=base_url,
        key=str(resolved.key),
        secret=str(resolved.secret),
        token_url=f"{base_url}/oauth2/token" if resolved.auth == "oauth2" else None,
        vendor_key=resolved.vendor_key,
        vendor_secret=resolved.vendor_secret,
        app=app,
        runner=runner,
    )


_DESCRIPTION = """\
Run a local OneRoster 1.1 + 1.2 district with sample data, for demos, tests and vendor
integration work. It serves every collection and relationship endpoint of OneRoster 1.1
(<base_url>/ims/oneroster/v1p1/...) and 1.2 (<base_url>/ims/oneroster/{rostering,gradebook,
resources}/v1p2/...), with paging, filter, sort, fields and gradebook writes, behind OAuth 1.0a
(HMAC-SHA256/SHA1) or OAuth2 client credentials (--versions serves only one of the two). Prints
base_url, key and secret, then serves until Ctrl-C."""


def _epilog() -> str:
    lines = ["profiles:"]
    for name, text in PROFILES.items():
        lines.append(
            textwrap.fill(
                text, width=92, initial_indent=f"  {name:<17} ", subsequent_indent=" " * 20
            )
        )
    lines += [
        "",
        "switches that break one thing on purpose:",
        "  --deny-scope S    withhold a scope of the district's Data to Share (403 there)",
        "  --hide-students   no students anywhere (a district that does not share students)",
        "  --no-student-accounts",
        "                    no student or parent has a user account: none visible on",
        "                    OneRoster 1.1, all on 1.2 (Infinite Campus's 1.1 rule)",
        "  --versions 1.1    serve only OneRoster 1.1 (or 1.2); the other version's paths",
        "                    answer 404, so clients must fall back",
        "  --auth oauth2     OAuth2 client credentials at <base_url>/oauth2/token, not OAuth1",
        "",
        "scopes: " + ", ".join(ALL_SCOPES),
    ]
    return "\n".join(lines)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _versions(text: str) -> tuple[str, ...]:
    try:
        return parse_versions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oneroster-proxy sandbox",
        description=_DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="port to listen on (default: a free one)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--auth", choices=["oauth1", "oauth2"], default="oauth1", help="default oauth1"
    )
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="default", help="district behaviour"
    )
    parser.add_argument(
        "--deny-scope", action="append", default=[], choices=ALL_SCOPES, metavar="SCOPE",
        help="withhold this scope (repeatable)",
    )  # fmt: skip
    parser.add_argument("--hide-students", action="store_true", help="hide every student")
    parser.add_argument(
        "--no-student-accounts", action="store_true",
        help="no student or parent has a user account: none visible on OneRoster 1.1",
    )  # fmt: skip
    parser.add_argument(
        "--versions", type=_versions, default=("v1p1", "v1p2"), metavar="1.1,1.2",
        help="OneRoster versions served, comma-separated (default 1.1,1.2)",
    )  # fmt: skip
    parser.add_argument("--key", help="client key / client id (default: generated)")
    parser.add_argument("--secret", help="client secret (default: generated)")
    parser.add_argument("--vendor-key", help="infinite-campus: vendor key (default SandboxLMS)")
    parser.add_argument(
        "--vendor-secret", help="infinite-campus: vendor secret (default: generated)"
    )
    parser.add_argument("--base-path", help="path before /ims/oneroster (default: the profile's)")
    parser.add_argument(
        "--token-ttl", type=int, default=3600, help="oauth2 token lifetime, seconds"
    )
    parser.add_argument("--seed", type=int, default=2025, help="sample data seed")
    parser.add_argument(
        "--synthetic-users", type=int, default=0, metavar="N",
        help="serve N generated users on /users, streamed (load tests)",
    )  # fmt: skip
    parser.add_argument(
        "--synthetic-padding", type=int, default=0, metavar="BYTES",
        help="extra bytes in each synthetic user (big pages from few users)",
    )  # fmt: skip
    return parser


def options_from_args(args: argparse.Namespace) -> SandboxOptions:
    return SandboxOptions(
        auth=args.auth,
        profile=args.profile,
        key=args.key,
        secret=args.secret,
        vendor_key=args.vendor_key,
        vendor_secret=args.vendor_secret,
        deny_scopes=tuple(args.deny_scope),
        hide_students=args.hide_students,
        no_student_accounts=args.no_student_accounts,
        versions=args.versions,
        base_path=args.base_path,
        token_ttl=args.token_ttl,
        seed=args.seed,
        synthetic_users=args.synthetic_users,
        synthetic_padding=args.synthetic_padding,
    )


async def _serve(options: SandboxOptions, host: str, port: int) -> None:
    # Signal handlers first: whoever reads the printed lines may signal at once.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running = await start_sandbox(options, host=host, port=port)
    lines = [f"base_url: {running.base_url}", f"key: {running.key}", f"secret: {running.secret}"]
    if running.token_url:
        lines.append(f"token_url: {running.token_url}")
    if running.vendor_authorization:
        lines.append(f"vendor_authorization: {running.vendor_authorization}")
    # Printing the credentials is this command's purpose: they are the sandbox's own, generated
    # for a local district, and the operator needs them to configure a client.
    for line in lines:
        print(line, flush=True)
    try:
        await stop.wait()
    finally:
        await running.close()


def run_sandbox_cli(argv: list[str] | None = None) -> int:
    """``oneroster-proxy sandbox ...``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
        options.resolved()  # validate before binding the port
        asyncio.run(_serve(options, args.host, args.port))
    except (ValueError, OSError) as exc:
        print(f"oneroster-proxy sandbox: {exc}", file=sys.stderr)
        return 2
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port free at this moment (for callers that must know it before starting)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
