"""``check APP_ID | --all [--json]``: the troubleshooting checklist (docs/checklist.md).

``check APP_ID`` exits 0 if no item fails, 1 if one does, 2 for an unknown appId; ``check
--all`` prints one line per connection (``--json``: one JSON array of the reports), shows
progress on stderr when stderr is a terminal, and exits 1 if any connection has a failing item.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from proxy import config as config_mod
from proxy.cli._common import with_store
from proxy.config import Config

if TYPE_CHECKING:
    from proxy.check import Report
    from proxy.cli._common import Commands
    from proxy.store.base import Store


def register(sub: Commands) -> None:
    check = sub.add_parser("check", help="run the troubleshooting checklist against a district")
    check.set_defaults(run=run)
    check.add_argument("app_id", nargs="?")
    check.add_argument("--all", action="store_true", help="every connection, one line each")
    check.add_argument("--config", required=True, metavar="PATH")
    check.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    config = config_mod.load(args.config)
    unusable: list[str] = []
    if args.all or (args.app_id and args.app_id not in config.connections):
        # Store connections are checked as if the file defined them.
        config = asyncio.run(_with_store(config, None if args.all else args.app_id, unusable))
    if args.all:
        code = check_all(config, as_json=args.json)
        # A store connection whose secret does not open fails on its own; the rest ran.
        for problem in unusable:
            print(f"FAIL  {problem}", file=sys.stderr)
        return 1 if unusable else code
    if not args.app_id:
        print("give an APP_ID or --all", file=sys.stderr)
        return 2
    return check_one(config, args.app_id, as_json=args.json)


async def _with_store(config: Config, app_id: str | None, unusable: list[str]) -> Config:
    """``config`` plus store connection ``app_id`` (or every store connection). With every
    one, a connection whose secret does not open is left out and named in ``unusable``; the
    one asked for by name raises (SecretKeyError: one line naming it)."""
    from proxy.gateway.resolve import with_store_connection
    from proxy.store import open_store
    from proxy.store.crypto import SecretBox, SecretKeyError

    box = SecretBox(list(config.store.secret_keys))
    store = open_store(config.store.url)
    await store.open()
    try:
        if app_id is not None:
            ids = [app_id]
        else:
            ids, after = [], ""
            while True:
                page = await store.list_connections(after=after, limit=500)
                ids += [r.app_id for r in page if r.app_id not in config.connections]
                if len(page) < 500:
                    break
                after = page[-1].app_id
        for one in ids:
            found = await store.resolve_connection(one)
            if found is None:
                continue
            try:
                config = with_store_connection(config, *found, box) or config
            except SecretKeyError as exc:
                if app_id is not None:
                    raise
                unusable.append(exc.description)
    finally:
        await store.close()
    return config


def check_one(config: Config, app_id: str, as_json: bool = False) -> int:
    from proxy.check import format_report, run_check

    if app_id not in config.connections:
        where = f" of {config.source}" if config.source else ""
        print(
            f'unknown appId "{app_id}" (not in [connections]{where} nor in the store)',
            file=sys.stderr,
        )
        return 2
    report = asyncio.run(run_check(config, app_id))
    print(json.dumps(report.as_json(), indent=2) if as_json else format_report(report))
    keep(config, [report])
    return 0 if report.ok else 1


def keep(config: Config, reports: list[Report]) -> None:
    """docs/checklist.md "Background checks": a check run here is kept in the store with the
    background ones (the last 20 per connection), so the console's board and its "failing"
    filter show it at once. A store that cannot take it costs a warning, not the result."""
    from proxy.errors import ProxyError
    from proxy.store.base import CheckResult

    at = datetime.now(UTC)

    async def write(store: Store) -> None:
        for report in reports:
            await store.add_check_result(
                CheckResult(app_id=report.app, at=at, document=report.as_json())
            )

    try:
        with_store(config, write)
    except ProxyError as err:
        print(f"warning: the result was not kept in the store: {err.description}", file=sys.stderr)


def check_all(config: Config, as_json: bool = False) -> int:
    """Every connection; a summary line each (or one JSON array of the ``check --json``
    documents). On a terminal, progress goes to stderr as each connection finishes; piped or
    redirected, stderr gets the final count only, so logs and CI output stay clean."""
    from proxy import check

    total = len(config.connections)
    progress = Progress(sys.stderr, total) if sys.stderr.isatty() else None
    reports = asyncio.run(
        check.check_all(config, on_report=progress.update if progress is not None else None)
    )
    if progress is not None:
        progress.done()
    if as_json:
        print(json.dumps([r.as_json() for r in reports], indent=2))
    else:
        for line in check.summary_lines(reports):
            print(line)
    keep(config, reports)
    failing = sum(1 for r in reports if not r.ok)
    print(f"{len(reports)} connections checked, {failing} failing", file=sys.stderr)
    return 1 if failing else 0


class Progress:
    """``checking: 3/40 done (app-7 ok)`` rewritten in place on a terminal."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = total
        self._done = 0

    def update(self, report: Report) -> None:
        self._done += 1
        verdict = "ok" if report.ok else "FAIL"
        self._write(f"\rchecking: {self._done}/{self._total} done ({report.app} {verdict})\x1b[K")

    def done(self) -> None:
        self._write("\r\x1b[K")  # the summary lines take the screen from here

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
