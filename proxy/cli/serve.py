"""``demo``, ``serve [--workers N]`` and ``sandbox``: the commands that run listeners.

docs/commands.md, ``serve``, "The sandbox district". Each imports what it runs
only when chosen, so the short commands (tokens, config validate) start fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from proxy import config as config_mod

if TYPE_CHECKING:
    from proxy.cli._common import Commands


def register(sub: Commands) -> None:
    demo = sub.add_parser("demo", help="run the sandbox district and a proxy wired to it")
    demo.set_defaults(run=run_demo)
    demo.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    demo.add_argument("--auth", choices=("oauth1", "oauth2"), default="oauth1")

    serve = sub.add_parser("serve", help="run the gateway and admin listeners")
    serve.set_defaults(run=run_serve)
    serve.add_argument("--config", required=True, metavar="PATH")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port (SO_REUSEPORT)",
    )
    serve.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=argparse.SUPPRESS,
        help="log lines as JSON (default) or text for humans",
    )

    # Parsed by the sandbox's own parser (``sandbox``, below): listed here for --help.
    sandbox = sub.add_parser(
        "sandbox", help="a local OneRoster district with sample data", add_help=False
    )
    sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    sandbox.set_defaults(run=lambda args: run_sandbox(args.sandbox_args))


def run_demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(port=args.port, auth=args.auth)


def run_serve(args: argparse.Namespace) -> int:
    config = config_mod.load(args.config)
    if args.workers > 1:
        from proxy.serve.workers import serve_workers

        return serve_workers(args.config, config, args.workers)
    from proxy.serve.eventloop import run
    from proxy.serve.server import serve

    return run(serve(config))


def run_sandbox(argv: Sequence[str]) -> int:
    from proxy.sandbox.server import run_sandbox_cli

    return run_sandbox_cli(list(argv))
