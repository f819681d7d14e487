"""``invites list [--json]`` and ``invites revoke APP_ID`` (docs/commands.md): the outstanding
intake links, and ending one. The store never had a link's token, so no listing shows it.
Only ``[store]`` is read from the file."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from proxy.cli._common import with_store
from proxy.connections.invites import invite_view, list_invites, revoke_invite
from proxy.connections.partial import load_store_only

if TYPE_CHECKING:
    from proxy.cli._common import Commands


def register(sub: Commands) -> None:
    group = sub.add_parser("invites", help="outstanding intake links: list, revoke")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="outstanding intake links (never the link itself)")
    listing.set_defaults(run=run_list)
    listing.add_argument("--config", required=True, metavar="PATH")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = actions.add_parser("revoke", help="end the outstanding intake link of APP_ID")
    revoke.set_defaults(run=run_revoke)
    revoke.add_argument("app_id", metavar="APP_ID")
    revoke.add_argument("--config", required=True, metavar="PATH")


def run_list(args: argparse.Namespace) -> int:
    config = load_store_only(args.config)
    rows = [invite_view(i) for i in with_store(config, list_invites)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no outstanding intake links")
        return 0
    print(f"{'APP_ID':<20} {'VENDOR':<12} {'DISTRICT':<20} {'CREATED':<21} {'EXPIRES':<21} SCOPES")
    for r in rows:
        print(
            f"{r['app_id']:<20} {r['vendor']:<12} {r['district_name']:<20} {r['created'][:19]:<21}"
            f" {r['expires'][:19]:<21} {','.join(r['scopes']) or '-'}"
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    config = load_store_only(args.config)
    with_store(config, lambda store: revoke_invite(store, args.app_id, interface="cli"))
    print(f"revoked the intake link of {args.app_id}; it now answers 404")
    return 0
