"""``ledger [APP_ID] --config PATH [--vendor V] [--since 30d] [--json|--csv]``: what each vendor
received, per connection, UTC day and collection, from the access ledger in the store
(docs/commands.md). Counts and field names only; the running proxy writes its counts every
few seconds, so the last seconds may not be there yet."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from proxy.cli._common import with_store
from proxy.connections.partial import load_store_only
from proxy.errors import ConfigError
from proxy.sharing.ledger import parse_since
from proxy.store.base import LedgerRow

if TYPE_CHECKING:
    from proxy.cli._common import Commands

CLASSES = ("2xx", "3xx", "4xx", "5xx")


def register(sub: Commands) -> None:
    cmd = sub.add_parser("ledger", help="what each vendor received (the access ledger)")
    cmd.set_defaults(run=run)
    cmd.add_argument("app_id", nargs="?", metavar="APP_ID", help="one connection (default: all)")
    cmd.add_argument("--config", required=True, metavar="PATH")
    cmd.add_argument("--vendor", metavar="V", help="one vendor's connections")
    cmd.add_argument("--since", metavar="30d", help="days back (30d) or a date (2026-09-01)")
    out = cmd.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")


def run(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = parse_since(args.since, datetime.now(UTC).date())
        except ValueError as exc:
            raise ConfigError([f"--since: {exc}"]) from None
    config = load_store_only(args.config)
    rows = with_store(
        config, lambda s: s.list_ledger(app=args.app_id, vendor=args.vendor, since=since)
    )
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
    elif args.csv:
        write_csv(rows)
    else:
        for line in text(rows):
            print(line)
    return 0


def write_csv(rows: list[LedgerRow]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(
        ["app", "vendor", "district", "day", "collection", "requests", "records", "bytes"]
        + [f"status_{c}" for c in CLASSES]
        + ["fields"]
    )
    for r in rows:
        writer.writerow(
            [r.app, r.vendor, r.district, r.day.isoformat(), r.collection, r.requests]
            + [r.records, r.bytes]
            + [r.status.get(c, 0) for c in CLASSES]
            + [" ".join(r.fields)]
        )


def text(rows: list[LedgerRow]) -> list[str]:
    """One line per row, then the fields each vendor received per collection."""
    if not rows:
        return ["no deliveries recorded"]
    pairs: dict[tuple[str, str], list[LedgerRow]] = {}
    for r in rows:
        pairs.setdefault((r.vendor, r.district), []).append(r)
    lines = []
    for (vendor, district), mine in sorted(pairs.items()):
        records = sum(r.records for r in mine)
        first, last = min(r.day for r in mine), max(r.day for r in mine)
        lines.append(
            f"{vendor} received from {district}: {records} records in "
            f"{sum(r.requests for r in mine)} answers, {first.isoformat()} to {last.isoformat()}"
        )
    lines.append("")
    lines += [
        f"{'day':<10}  {'app':<16} {'vendor':<12} {'district':<14} {'collection':<18} "
        f"{'requests':>8} {'records':>9} {'bytes':>12}  status"
    ]
    for r in rows:
        status = " ".join(f"{k}={v}" for k, v in sorted(r.status.items()))
        lines.append(
            f"{r.day.isoformat():<10}  {r.app:<16} {r.vendor:<12} {r.district:<14} "
            f"{r.collection:<18} {r.requests:>8} {r.records:>9} {r.bytes:>12}  {status}"
        )
    fields: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        fields.setdefault((r.app, r.collection), set()).update(r.fields)
    lines.append("")
    lines.append("fields delivered:")
    for (app, collection), names in sorted(fields.items()):
        lines.append(f"  {app} {collection}: {', '.join(sorted(names)) or '-'}")
    return lines
