"""``districts add | list | show | update | remove | pause | resume`` (docs/commands.md).

A district in the store takes the keys of ``[districts.X]`` as flags; ``remove`` refuses while
a connection uses it. The config file's districts are listed too (``source: config``) and
change only in the file.
"""

from __future__ import annotations

import argparse
import functools
import json
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from proxy.cli._managed import config_arg, csv, dates, load, run, show
from proxy.config import as_text
from proxy.connections import managed
from proxy.errors import ConfigError, NotFound
from proxy.store.crypto import SecretBox

if TYPE_CHECKING:
    from proxy.cli._common import Commands


def register(sub: Commands) -> None:
    group = sub.add_parser("districts", help="districts kept in the store")
    group.set_defaults(run=main)
    actions = group.add_subparsers(dest="districts_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="a district in the store")
    add.add_argument("name")
    config_arg(add)
    _district_flags(add, adding=True)
    lst = actions.add_parser("list", help="the config file's and the store's districts")
    config_arg(lst)
    one = actions.add_parser("show", help="one district")
    one.add_argument("name")
    config_arg(one)
    update = actions.add_parser("update", help="change a store district")
    update.add_argument("name")
    config_arg(update)
    _district_flags(update, adding=False)
    remove = actions.add_parser("remove", help="remove a store district no connection uses")
    remove.add_argument("name")
    config_arg(remove)
    pause = actions.add_parser("pause", help="pause every request to a store district")
    pause.add_argument("name")
    config_arg(pause)
    pause.add_argument("--from", dest="start", required=True, type=dates, metavar="DATE")
    pause.add_argument("--to", dest="end", required=True, type=dates, metavar="DATE")
    pause.add_argument("--reason", required=True, metavar="TEXT")
    resume = actions.add_parser("resume", help="end the pause a store district is in")
    resume.add_argument("name")
    config_arg(resume)


def _district_flags(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument("--base-url", required=adding, metavar="URL")
    parser.add_argument("--auth", choices=("oauth1", "oauth2"))
    parser.add_argument("--token-url", metavar="URL")
    parser.add_argument("--signature-method", metavar="M", help="HMAC-SHA256 or HMAC-SHA1")
    flag = parser.add_mutually_exclusive_group()
    flag.add_argument(
        "--vendor-authorization",
        action="store_true",
        default=None,
        help="send the vendor's x-vendor-authorization on gradebook endpoints",
    )
    if not adding:
        flag.add_argument(
            "--no-vendor-authorization", dest="vendor_authorization", action="store_false"
        )
    parser.add_argument("--versions", type=csv, metavar="1.1,1.2")
    parser.add_argument("--max-connections", type=int, metavar="N")
    parser.add_argument("--max-wait", metavar="D", help="e.g. 10s")
    parser.add_argument("--rate-limit", metavar="R", help="e.g. 600/m")
    parser.add_argument("--timezone", metavar="TZ", help="IANA name, e.g. America/Chicago")
    windows = parser.add_mutually_exclusive_group()
    windows.add_argument(
        "--window",
        dest="windows",
        action="append",
        type=window,
        metavar='"DAYS FROM-TO N"',
        help='a peak-hour window, e.g. "mon-fri 07:00-16:00 1" (repeat for more)',
    )
    if not adding:
        windows.add_argument(
            "--no-windows", dest="windows", action="store_const", const=[], help="drop windows"
        )


def window(value: str) -> dict[str, Any]:
    """An argparse type: ``"mon-fri 07:00-16:00 1"`` as a ``windows`` entry (its values are
    checked with the district, naming ``windows[i]``'s key)."""
    parts = value.split()
    start, sep, end = parts[1].partition("-") if len(parts) == 3 else ("", "", "")
    if not sep or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(
            f'invalid window "{value}" (write DAYS FROM-TO MAX_CONNECTIONS, e.g. '
            '"mon-fri 07:00-16:00 1")'
        )
    return {"days": parts[0], "from": start, "to": end, "max_connections": int(parts[2])}


def _table(args: argparse.Namespace) -> dict[str, Any]:
    names = {
        "base_url": args.base_url,
        "auth": args.auth,
        "token_url": args.token_url,
        "signature_method": args.signature_method,
        "vendor_authorization": args.vendor_authorization,
        "versions": args.versions,
        "max_connections": args.max_connections,
        "max_wait": args.max_wait,
        "rate_limit": args.rate_limit,
        "timezone": args.timezone,
        "windows": args.windows,
    }
    return {k: v for k, v in names.items() if v is not None}


def main(args: argparse.Namespace) -> int:
    config = load(args)
    catalog = config.catalog
    action = args.districts_command
    if action == "add":
        record = run(
            config,
            lambda s: managed.add_district(s, catalog, args.name, _table(args), interface="cli"),
        )
        show(managed.district_view(record, "store"), args.json)
        return 0
    if action == "update":
        # A change of where the district sends re-seals its connections' secrets; any other
        # change needs no key (without one, a re-seal is refused naming store.secret_keys).
        try:
            box: SecretBox | None = config.secret_box()
        except ConfigError:
            box = None
        record = run(
            config,
            lambda s: managed.update_district(
                s, catalog, args.name, _table(args), interface="cli", box=box
            ),
        )
        show(managed.district_view(record, "store"), args.json)
        return 0
    if action in ("pause", "resume"):
        if action == "pause":
            pause = {
                "from": args.start.isoformat(),
                "to": args.end.isoformat(),
                "reason": args.reason,
            }
            change = functools.partial(managed.pause_district, pause=pause)
        else:
            change = functools.partial(managed.resume_district, now=datetime.now(UTC))
        record = run(config, lambda s: change(s, catalog, args.name, interface="cli"))
        show(managed.district_view(record, "store"), args.json)
        return 0
    if action == "remove":
        run(config, lambda s: managed.remove_district(s, catalog, args.name, interface="cli"))
        print(f"removed district {args.name}")
        return 0
    if action == "show":
        if args.name in config.districts:
            show(_config_view(args.name, config.districts[args.name]), args.json)
            return 0
        found = run(config, lambda s: s.get_district(args.name))
        if found is None:
            raise NotFound(f'no district "{args.name}"')
        show(managed.district_view(found, "store"), args.json)
        return 0
    if action == "list":
        stored = run(config, lambda s: s.list_districts())
        views = [_config_view(n, t) for n, t in config.districts.items()]
        views += [managed.district_view(d, "store") for d in stored]
        views.sort(key=lambda v: v["name"])
        if args.json:
            print(json.dumps(views, indent=2))
            return 0
        columns = ("name", "auth", "base_url", "source")
        print("  ".join(c.upper().ljust(w) for c, w in zip(columns, _WIDTHS, strict=True)))
        for view in views:
            cells = [as_text(view.get(c)) for c in columns]
            print("  ".join(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=True)).rstrip())
        return 0
    raise AssertionError(action)


_WIDTHS = (24, 6, 56, 6)


def _config_view(name: str, table: Any) -> dict[str, Any]:
    """A district of the config file as written (its values may hold unresolved ``${...}``:
    this command does not resolve the file's secrets)."""
    raw = table if isinstance(table, dict) else {}
    view: dict[str, Any] = {"name": name}
    for key in managed.DISTRICT_FIELDS:
        view[key] = raw.get(key)
    view["auth"] = view["auth"] or "oauth1"
    view["timezone"] = view["timezone"] or "UTC"
    # TOML dates and times as written (JSON has neither)
    for key in ("windows", "pauses"):
        entries = view[key] if isinstance(view[key], list) else []
        view[key] = [
            {k: v.isoformat() if isinstance(v, date | time) else v for k, v in e.items()}
            for e in entries
            if isinstance(e, dict)
        ]
    view["source"] = "config"
    return view
