"""``changes walk|accept|discard|list APP_ID``: the change feed, for operators
(docs/commands.md, docs/http-api.md "Change feed").

``walk`` walks the connection now, the way the daily walk does (the district's slots and
rate, the same store lock), shows progress on stderr when it is a terminal and prints the
counts; exit 0 when published, 1 when held or incomplete, 2 for an unknown appId.
``accept`` publishes a held walk, ``discard`` drops it. ``list`` prints the published
changes after ``--since`` (a cursor), oldest first, or ``--json`` the vendor's document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, TextIO

from proxy import config as config_mod
from proxy.cli._common import with_store
from proxy.errors import Conflict
from proxy.store.base import Store, WalkRecord

if TYPE_CHECKING:
    from proxy.changes.diff import Progress
    from proxy.cli._common import Commands

#: Changes ``changes list`` reads (and prints) at most.
LIST_LIMIT = 1000


def register(sub: Commands) -> None:
    changes = sub.add_parser("changes", help="the change feed: walk now, accept, discard, list")
    actions = changes.add_subparsers(dest="changes_action", required=True)
    for name, text in (
        ("walk", "walk the connection's collections now and print the counts"),
        ("accept", "publish the connection's held walk"),
        ("discard", "drop the connection's held walk: nothing of it is published"),
        ("list", "the published changes, oldest first"),
    ):
        action = actions.add_parser(name, help=text)
        action.set_defaults(run=run)
        action.add_argument("app_id", metavar="APP_ID")
        action.add_argument("--config", required=True, metavar="PATH")
        if name == "list":
            action.add_argument("--since", metavar="CURSOR", help="start after this cursor")
            action.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    config = config_mod.load(args.config)
    if args.changes_action == "walk":
        return walk(config, args.app_id)
    if args.changes_action == "list":
        return list_changes(config, args.app_id, args.since, as_json=args.json)
    from proxy.changes import diff

    act = diff.accept if args.changes_action == "accept" else diff.discard
    walked = with_store(config, lambda store: act(store, args.app_id, "cli"))
    verb = "published" if args.changes_action == "accept" else "discarded"
    print(f"{args.app_id}: the held walk of {_when(walked)} is {verb} ({_counts(walked)})")
    return 0


def walk(config: config_mod.Config, app_id: str) -> int:
    from proxy.app import create_app, running
    from proxy.changes.diff import Walk
    from proxy.check.catalog import find_connection
    from proxy.gateway.context import SERVICES
    from proxy.store import open_store

    progress = Shown(sys.stderr) if sys.stderr.isatty() else None

    async def go() -> WalkRecord | None:
        services = create_app(config, open_store(config.store.url))[SERVICES]
        async with running(services):
            listed = await find_connection(services, app_id)
            if listed is None:
                return None
            if not listed.connection.config.changes:
                raise Conflict(f"{app_id} has no change feed (set changes = true to walk it)")
            report = progress.update if progress is not None else None
            return await Walk(services, listed.connection, report=report).run()

    walked = asyncio.run(go())
    if progress is not None:
        progress.done()
    if walked is None:
        print(f'unknown appId "{app_id}"', file=sys.stderr)
        return 2
    for collection, counts in walked.counts.items():
        print(
            f"{collection:<17} {counts['records']:>8} records  {counts['created']:>7} created  "
            f"{counts['updated']:>7} updated  {counts['deleted']:>7} deleted"
        )
    if walked.state == "published":
        print(f"{app_id}: walk published ({_counts(walked)})")
        return 0
    if walked.state == "held":
        print(
            f"{app_id}: walk held, nothing published: {walked.error}. Review, then "
            f"`oneroster-proxy changes accept {app_id}` or `changes discard {app_id}`"
        )
        return 1
    print(f"{app_id}: walk did not complete, nothing changed: {walked.error}")
    return 1


def list_changes(config: config_mod.Config, app_id: str, since: str | None, as_json: bool) -> int:
    from proxy.changes.feed import change_json, decode_cursor, encode_cursor

    after = 0 if since is None else decode_cursor(since)

    async def read(store: Store) -> tuple[int, list[dict[str, str]], int]:
        floor, _ = await store.changes_bounds(app_id)
        start = max(after, floor)
        changes = await store.read_changes(app_id, start, LIST_LIMIT)
        last = changes[-1].seq if changes else start
        return floor, [change_json(c) for c in changes], last

    floor, changes, last = with_store(config, read)
    if since is not None and after < floor:
        print(f"{app_id}: this cursor is older than the changes kept", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"changes": changes, "cursor": encode_cursor(last)}, indent=2))
        return 0
    for c in changes:
        print(f"{c['at']}  {c['change']:<8} {c['collection']:<17} {c['sourcedId']}")
    print(f"cursor: {encode_cursor(last)}", file=sys.stderr)
    return 0


def _when(walk: WalkRecord) -> str:
    return walk.started.strftime("%Y-%m-%d %H:%M UTC")


def _counts(walk: WalkRecord) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in walk.totals().items())


class Shown:
    """``walking users: 12000/100000`` rewritten in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def update(self, progress: Progress) -> None:
        total = "?" if progress.total is None else str(progress.total)
        self._write(f"\rwalking {progress.collection}: {progress.seen}/{total}\x1b[K")

    def done(self) -> None:
        self._write("\r\x1b[K")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
