"""``tokens issue | rotate | revoke | list`` (docs/commands.md).

A token a command issues is the last line of stdout; a token id is never confused with a token
(a whole token pasted as an id is refused without being echoed).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from proxy import tokens
from proxy.cli._common import duration, known_vendor, print_table, with_store
from proxy.config import format_duration
from proxy.connections.partial import StoreOnly, load_store_only
from proxy.store.base import Store, TokenRecord

if TYPE_CHECKING:
    from proxy.cli._common import Commands


def register(sub: Commands) -> None:
    tok = sub.add_parser("tokens", help="issue, rotate, revoke and list vendor tokens")
    tok.set_defaults(run=run)
    tsub = tok.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    issue = tsub.add_parser("issue", help="new vendor token (printed as the last line)")
    issue.add_argument("vendor")
    issue.add_argument("--config", required=True, metavar="PATH")
    issue.add_argument("--ttl", type=duration, help="lifetime, e.g. 24h (default: never expires)")
    rotate = tsub.add_parser("rotate", help="new token; older ones end after --grace")
    rotate.add_argument("vendor")
    rotate.add_argument("--config", required=True, metavar="PATH")
    rotate.add_argument(
        "--grace",
        type=duration,
        required=True,
        help="how long older tokens keep working, e.g. 1h or 0s",
    )
    rotate.add_argument(
        "--ttl",
        type=duration,
        default=tokens.INHERIT,
        help="lifetime of the new token (default: that of the vendor's newest token)",
    )
    revoke = tsub.add_parser("revoke", help="revoke one token, or --all of a vendor's")
    revoke.add_argument(
        "token_id",
        nargs="?",
        metavar="TOKEN_ID",
        help="the token's id, the whole token, or its prefix as 'tokens list' shows it",
    )
    revoke.add_argument("--all", metavar="VENDOR", dest="all_vendor")
    revoke.add_argument("--config", required=True, metavar="PATH")
    lst = tsub.add_parser("list", help="id, vendor, prefix, created, expires, last used")
    lst.add_argument("vendor", nargs="?")
    lst.add_argument("--config", required=True, metavar="PATH")
    lst.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    # docs/commands.md: only [store] is needed; the secrets of districts are never resolved
    # here.
    config = load_store_only(args.config)
    action = args.tokens_command
    if action == "issue":
        known_vendor(config, args.vendor)
        issued = with_store(
            config, lambda s: tokens.issue(s, args.vendor, ttl=args.ttl, interface="cli")
        )
        _print_listing(tokens.listing(issued.record))
        print(issued.token)
        return 0
    if action == "rotate":
        known_vendor(config, args.vendor)
        issued, ending = with_store(
            config,
            lambda s: tokens.rotate(
                s, args.vendor, grace=args.grace, ttl=args.ttl, interface="cli"
            ),
        )
        _print_listing(tokens.listing(issued.record))
        grace = format_duration(args.grace.total_seconds())
        print(f"older tokens ending: {', '.join(ending) or 'none'} (grace {grace})")
        if not args.grace:
            print("JWTs issued to this vendor so far: ended (no grace)")
        print(issued.token)
        return 0
    if action == "revoke":
        return _revoke(args, config)
    if action == "list":
        records = with_store(config, lambda s: s.list_tokens(args.vendor))
        rows = [tokens.listing(r) for r in records]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            now = tokens.now_utc()
            table = [
                {**row, "status": tokens.status(r, now)}
                for row, r in zip(rows, records, strict=True)
            ]
            print_table(table, [*tokens.LISTING_FIELDS, "status"])
        return 0
    raise AssertionError(action)


def _revoke(args: argparse.Namespace, config: StoreOnly) -> int:
    if args.all_vendor:
        if args.token_id:
            print("give either a TOKEN_ID or --all VENDOR, not both", file=sys.stderr)
            return 2
        known_vendor(config, args.all_vendor)
        ids = with_store(config, lambda s: tokens.revoke_all(s, args.all_vendor, interface="cli"))
        print(f"revoked {len(ids)} token(s) of {args.all_vendor}: {', '.join(ids) or '-'}")
        print(f"every JWT issued to {args.all_vendor} until now is refused too")
        return 0
    if not args.token_id:
        print("give a TOKEN_ID or --all VENDOR", file=sys.stderr)
        return 2
    ref = args.token_id

    async def revoke(store: Store) -> TokenRecord | None:
        record = await tokens.resolve(store, ref)
        return await tokens.revoke(store, record.id, interface="cli")

    try:
        record = with_store(config, revoke)
    except tokens.TokenReferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if record is None:  # gone between the look-up and the revocation
        print("error: that token no longer exists", file=sys.stderr)
        return 1
    if record.revoked is not None:
        print(
            f"{record.id} ({record.vendor}) was already revoked at {tokens.iso_utc(record.revoked)}"
        )
        return 0
    print(f"revoked {record.id} ({record.vendor})")
    return 0


def _print_listing(row: dict[str, Any]) -> None:
    for key in ("id", "vendor", "prefix", "created", "expires"):
        print(f"{key}: {row[key] or '-'}")
