"""``check APP_ID | --all [--json]``: the troubleshooting checklist (SPEC.md "check APP_ID").

``check APP_ID`` exits 0 if no item fails, 1 if one does, 2 for an unknown appId; ``check
--all`` prints one line per connection and exits 1 if any connection has a failing item.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from .. import config as config_mod
from ..config import Config

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
    config = config_mod.load(args.config)
    if args.all:
        return check_all(config)
    if not args.app_id:
        print("give an APP_ID or --all", file=sys.stderr)
        return 2
    return check_one(config, args.app_id, as_json=args.json)


def check_one(config: Config, app_id: str, as_json: bool = False) -> int:
    from ..check import format_report, run_check

    if app_id not in config.connections:
        where = f" of {config.source}" if config.source else ""
        print(f'unknown appId "{app_id}" (not in [connections]{where})', file=sys.stderr)
        return 2
    report = asyncio.run(run_check(config, app_id))
    print(json.dumps(report.as_json(), indent=2) if as_json else format_report(report))
    return 0 if report.ok else 1


def check_all(config: Config) -> int:
    from .. import check

    reports = asyncio.run(check.check_all(config))
    for line in check.summary_lines(reports):
        print(line)
    failing = sum(1 for r in reports if not r.ok)
    print(f"{len(reports)} connections checked, {failing} failing", file=sys.stderr)
    return 1 if failing else 0
