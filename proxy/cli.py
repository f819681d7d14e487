"""The ``oneroster-proxy`` command: parse, call, print. The only place that exits.

SPEC.md "Install and commands". Library errors become one-line messages on stderr and a
non-zero exit; a token a command issues is the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from . import __version__, tokens
from . import config as config_mod
from .errors import ConfigError, ProxyError
from .store import open_store
from .store.base import Store

T = TypeVar("T")


def _duration(value: str) -> timedelta:
    try:
        return timedelta(seconds=config_mod.parse_duration(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oneroster-proxy",
        description="One stable URL and one bearer token for every district's OneRoster API.",
    )
    parser.add_argument("--version", action="version", version=f"oneroster-proxy {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="log lines as JSON (default) or text for humans",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the sandbox district and a proxy wired to it")
    demo.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    demo.add_argument("--auth", choices=("oauth1", "oauth2"), default="oauth1")

    serve = sub.add_parser("serve", help="run the gateway and admin listeners")
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

    tok = sub.add_parser("tokens", help="issue, rotate, revoke and list vendor tokens")
    tsub = tok.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    issue = tsub.add_parser("issue", help="new vendor token (printed as the last line)")
    issue.add_argument("vendor")
    issue.add_argument("--config", required=True, metavar="PATH")
    issue.add_argument("--ttl", type=_duration, help="lifetime, e.g. 24h (default: never expires)")
    rotate = tsub.add_parser("rotate", help="new token; older ones end after --grace")
    rotate.add_argument("vendor")
    rotate.add_argument("--config", required=True, metavar="PATH")
    rotate.add_argument(
        "--grace",
        type=_duration,
        required=True,
        help="how long older tokens keep working, e.g. 1h or 0s",
    )
    revoke = tsub.add_parser("revoke", help="revoke one token, or --all of a vendor's")
    revoke.add_argument("token_id", nargs="?")
    revoke.add_argument("--all", metavar="VENDOR", dest="all_vendor")
    revoke.add_argument("--config", required=True, metavar="PATH")
    lst = tsub.add_parser("list", help="id, vendor, prefix, created, expires, last used")
    lst.add_argument("vendor", nargs="?")
    lst.add_argument("--config", required=True, metavar="PATH")
    lst.add_argument("--json", action="store_true")

    check = sub.add_parser("check", help="run the troubleshooting checklist against a district")
    check.add_argument("app_id", nargs="?")
    check.add_argument("--all", action="store_true", help="every connection, one line each")
    check.add_argument("--config", required=True, metavar="PATH")
    check.add_argument("--json", action="store_true")

    cfg = sub.add_parser("config", help="configuration tools")
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    validate = csub.add_parser("validate", help="report every problem of a config file")
    validate.add_argument("path")

    audit = sub.add_parser("audit", help="operator actions recorded in the store")
    audit.add_argument("--config", required=True, metavar="PATH")
    audit.add_argument("--json", action="store_true")

    sandbox = sub.add_parser(
        "sandbox", help="a local OneRoster district with sample data", add_help=False
    )
    sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sandbox":
        from .sandbox.server import run_sandbox_cli

        sys.exit(run_sandbox_cli(argv[1:]))
    args = build_parser().parse_args(argv)
    from .logs import setup_logging

    setup_logging(args.log_format)
    try:
        code = _dispatch(args)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        code = 2
    except ProxyError as err:
        print(f"error: {err.description}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "demo":
        from .demo import run_demo

        return run_demo(port=args.port, auth=args.auth)
    if command == "serve":
        return _serve(args)
    if command == "tokens":
        return _tokens(args)
    if command == "check":
        return _check(args)
    if command == "config":
        return _validate(args.path)
    if command == "audit":
        return _audit(args)
    raise AssertionError(command)


def _serve(args: argparse.Namespace) -> int:
    config = config_mod.load(args.config)
    if args.workers > 1:
        from .workers import serve_workers

        return serve_workers(args.config, config, args.workers)
    from .server import serve

    return asyncio.run(serve(config))


def _with_store(config: config_mod.Config, action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = open_store(config.store.url)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _known_vendor(config: config_mod.Config, vendor: str) -> None:
    if vendor not in config.vendors:
        raise ConfigError([f'vendor "{vendor}" is not in [vendors] of {config.source}'])


def _tokens(args: argparse.Namespace) -> int:
    config = config_mod.load(args.config)
    action = args.tokens_command
    if action == "issue":
        _known_vendor(config, args.vendor)
        issued = _with_store(
            config, lambda s: tokens.issue(s, args.vendor, ttl=args.ttl, interface="cli")
        )
        _print_listing(tokens.listing(issued.record))
        print(issued.token)
        return 0
    if action == "rotate":
        _known_vendor(config, args.vendor)
        issued, ending = _with_store(
            config, lambda s: tokens.rotate(s, args.vendor, grace=args.grace, interface="cli")
        )
        _print_listing(tokens.listing(issued.record))
        print(f"older tokens ending: {', '.join(ending) or 'none'} (grace {args.grace})")
        print(issued.token)
        return 0
    if action == "revoke":
        if args.all_vendor:
            if args.token_id:
                print("give either a TOKEN_ID or --all VENDOR, not both", file=sys.stderr)
                return 2
            _known_vendor(config, args.all_vendor)
            ids = _with_store(
                config, lambda s: tokens.revoke_all(s, args.all_vendor, interface="cli")
            )
            print(f"revoked {len(ids)} token(s) of {args.all_vendor}: {', '.join(ids) or '-'}")
            return 0
        if not args.token_id:
            print("give a TOKEN_ID or --all VENDOR", file=sys.stderr)
            return 2
        if not tokens.ID_RE.fullmatch(args.token_id):
            # A whole token pasted by mistake would be echoed below; never print one.
            print("TOKEN_ID is the 12-character id shown by 'tokens list'", file=sys.stderr)
            return 2
        record = _with_store(config, lambda s: tokens.revoke(s, args.token_id, interface="cli"))
        if record is None:
            print(f"no token with id {args.token_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.token_id} ({record.vendor})")
        return 0
    if action == "list":
        records = _with_store(config, lambda s: s.list_tokens(args.vendor))
        rows = [tokens.listing(r) for r in records]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            now = tokens.now_utc()
            table = [
                {**row, "status": tokens.status(r, now)}
                for row, r in zip(rows, records, strict=True)
            ]
            _print_table(table, [*tokens.LISTING_FIELDS, "status"])
        return 0
    raise AssertionError(action)


def _print_listing(row: dict[str, Any]) -> None:
    for key in ("id", "vendor", "prefix", "created", "expires"):
        print(f"{key}: {row[key] or '-'}")


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[str(r.get(c) or "-") for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _validate(path: str) -> int:
    """``config validate PATH``: every problem on its own line (key path first) and exit 1, or
    ``PATH: ok (...)`` and exit 0, with any warnings on stderr (they never fail)."""
    try:
        config = config_mod.load(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: invalid ({_plural(len(err.problems), 'problem')})", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    counts = [
        _plural(len(config.vendors), "vendor"),
        _plural(len(config.districts), "district"),
        _plural(len(config.connections), "connection"),
    ]
    if config.warnings:
        counts.append(_plural(len(config.warnings), "warning"))
    print(f"{path}: ok ({', '.join(counts)})")
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _check(args: argparse.Namespace) -> int:
    from .check import check_all_cli, check_one_cli

    config = config_mod.load(args.config)
    if args.all:
        return check_all_cli(config)
    if not args.app_id:
        print("give an APP_ID or --all", file=sys.stderr)
        return 2
    return check_one_cli(config, args.app_id, as_json=args.json)


def _audit(args: argparse.Namespace) -> int:
    config = config_mod.load(args.config)
    events = _with_store(config, lambda s: s.list_audit())
    rows = [
        {
            "at": tokens.iso_utc(e.at),
            "action": e.action,
            "interface": e.interface,
            "vendor": e.vendor,
            "token_id": e.token_id,
            "detail": e.detail,
        }
        for e in events
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            detail = json.dumps(row["detail"]) if row["detail"] else ""
            print(
                f"{row['at']}  {row['action']:<17} {row['interface']:<6} "
                f"{row['vendor'] or '-':<12} {row['token_id'] or '-':<12} {detail}".rstrip()
            )
    return 0
