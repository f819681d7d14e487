"""``check APP_ID | --all [--json]``: the troubleshooting checklist (SPEC.md "check APP_ID")."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .. import config as config_mod

if TYPE_CHECKING:
    from ._common import Commands

ORDER = 40


def register(sub: Commands) -> None:
    check = sub.add_parser("check", help="run the troubleshooting checklist against a district")
    check.set_defaults(run=run)
    check.add_argument("app_id", nargs="?")
    check.add_argument("--all", action="store_true", help="every connection, one line each")
    check.add_argument("--config", required=True, metavar="PATH")
    check.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..check import check_all_cli, check_one_cli

    config = config_mod.load(args.config)
    if args.all:
        return check_all_cli(config)
    if not args.app_id:
        print("give an APP_ID or --all", file=sys.stderr)
        return 2
    return check_one_cli(config, args.app_id, as_json=args.json)
