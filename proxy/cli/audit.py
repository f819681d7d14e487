"""``audit [--json]``: the operator actions recorded in the store (docs/http-api.md)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from proxy import tokens
from proxy.cli._common import with_store
from proxy.config import details_text
from proxy.connections.partial import load_store_only

if TYPE_CHECKING:
    from proxy.cli._common import Commands


def register(sub: Commands) -> None:
    audit = sub.add_parser("audit", help="operator actions recorded in the store")
    audit.set_defaults(run=run)
    audit.add_argument("--config", required=True, metavar="PATH")
    audit.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    # docs/commands.md: only [store] is needed; the secrets of districts are never resolved
    # here.
    config = load_store_only(args.config)
    events = with_store(config, lambda s: s.list_audit())
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
        for row, e in zip(rows, events, strict=True):
            detail = details_text(e.detail) if e.detail else ""
            print(
                f"{row['at']}  {row['action']:<17} {row['interface']:<6} "
                f"{row['vendor'] or '-':<12} {row['token_id'] or '-':<12} {detail}".rstrip()
            )
    return 0
