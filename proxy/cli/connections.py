"""``connections add | list | show | update | renew | remove | import`` (docs/commands.md).

A secret is read from standard input (one line) or ``--secret-env NAME``, never from argv, and
never printed. ``list`` streams: the config file's connections, then the store's page by page,
so ten thousand of them print without being held at once. Each action is one entry of
``ACTIONS`` (its parser, its function): a new action is one more entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxy.cli._import import import_file
from proxy.cli._invite import invite, invite_parser
from proxy.cli._managed import (
    config_arg,
    connection_arg,
    csv,
    dates,
    load,
    read_secret,
    run,
    secret_args,
    show,
)
from proxy.config import as_text
from proxy.connections import managed
from proxy.errors import NotFound
from proxy.store.base import Store

if TYPE_CHECKING:
    from proxy.cli._common import Commands

PAGE = 500


def _add_parser(p: argparse.ArgumentParser) -> None:
    connection_arg(p)
    p.add_argument("--vendor", required=True, metavar="V")
    p.add_argument("--district", required=True, metavar="D")
    p.add_argument("--key", required=True, metavar="KEY")
    p.add_argument("--scopes", required=True, type=csv, metavar="S1,S2")
    p.add_argument("--expires", type=dates, metavar="YYYY-MM-DD")
    p.add_argument("--disabled", action="store_true", help="added disabled (403 until enabled)")
    _drop_fields_flag(p)
    secret_args(p)


def _drop_fields_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--drop-fields",
        type=csv,
        metavar="C.F,C.F",
        help='the sharing policy: fields the vendor never receives ("" for none; '
        "default users.password)",
    )


def _add(args: argparse.Namespace) -> int:
    config = load(args)
    table: dict[str, Any] = {
        "vendor": args.vendor,
        "district": args.district,
        "key": args.key,
        "secret": read_secret(args),
        "scopes": args.scopes,
        "enabled": not args.disabled,
        "expires": args.expires,
        "drop_fields": args.drop_fields,
    }
    table = {k: v for k, v in table.items() if v is not None}
    box = config.secret_box()
    record = run(
        config,
        lambda s: managed.add_connection(
            s, config.catalog, box, args.app_id, table, interface="cli"
        ),
    )
    show(managed.connection_view(record), args.json)
    return 0


def _list_parser(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--vendor", metavar="V")


_COLUMNS = (("appId", 24), ("vendor", 12), ("district", 16), ("source", 6), ("enabled", 7),
            ("expires", 10), ("scopes", 0))  # fmt: skip


def _list(args: argparse.Namespace) -> int:
    config = load(args)
    emit = _json_emitter() if args.json else _text_emitter()
    for app_id, table in sorted(config.connections.items()):
        view = managed.config_connection_view(app_id, table)
        if args.vendor is None or view["vendor"] == args.vendor:
            emit(view)

    async def pages(store: Store) -> None:
        after = ""
        while True:
            page = await store.list_connections(vendor=args.vendor, after=after, limit=PAGE)
            for record in page:
                emit(managed.connection_view(record))
            sys.stdout.flush()
            if len(page) < PAGE:
                return
            after = page[-1].app_id

    run(config, pages)
    emit(None)
    return 0


def _json_emitter() -> Callable[[dict[str, Any] | None], None]:
    state = {"first": True}

    def emit(view: dict[str, Any] | None) -> None:
        if view is None:
            print("[]" if state["first"] else "\n]")
            return
        print("[\n  " if state["first"] else ",\n  ", end="")
        state["first"] = False
        print(json.dumps(view), end="")

    return emit


def _text_emitter() -> Callable[[dict[str, Any] | None], None]:
    print("  ".join(n.upper().ljust(w) for n, w in _COLUMNS).rstrip())

    def emit(view: dict[str, Any] | None) -> None:
        if view is None:
            return
        cells = []
        for name, width in _COLUMNS:
            cells.append(as_text(view.get(name)).ljust(width))
        print("  ".join(cells).rstrip())

    return emit


def _show_parser(p: argparse.ArgumentParser) -> None:
    connection_arg(p)


def _show(args: argparse.Namespace) -> int:
    config = load(args)
    if args.app_id in config.connections:
        view = managed.config_connection_view(args.app_id, config.connections[args.app_id])
        show(view, args.json)
        return 0
    record = run(config, lambda s: s.get_connection(args.app_id))
    if record is None:
        raise NotFound(f"no connection {args.app_id}")
    show(managed.connection_view(record), args.json)
    return 0


def _update_parser(p: argparse.ArgumentParser) -> None:
    connection_arg(p)
    p.add_argument("--scopes", type=csv, metavar="S1,S2")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false")
    _expiry_flags(p)
    _drop_fields_flag(p)


def _expiry_flags(p: argparse.ArgumentParser) -> None:
    when = p.add_mutually_exclusive_group()
    when.add_argument("--expires", type=dates, metavar="YYYY-MM-DD")
    when.add_argument("--no-expiry", action="store_true", help="the connection never expires")


def _expiry(args: argparse.Namespace) -> dict[str, Any]:
    if args.no_expiry:
        return {"expires": None}
    return {"expires": args.expires} if args.expires is not None else {}


def _update(args: argparse.Namespace) -> int:
    config = load(args)
    changes: dict[str, Any] = _expiry(args)
    if args.scopes is not None:
        changes["scopes"] = args.scopes
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    if args.drop_fields is not None:
        changes["drop_fields"] = args.drop_fields
    record = run(
        config,
        lambda s: managed.update_connection(
            s, config.catalog, args.app_id, changes, interface="cli"
        ),
    )
    show(managed.connection_view(record), args.json)
    return 0


def _renew_parser(p: argparse.ArgumentParser) -> None:
    connection_arg(p)
    p.add_argument("--key", required=True, metavar="KEY")
    _expiry_flags(p)
    secret_args(p)


def _renew(args: argparse.Namespace) -> int:
    config = load(args)
    secret = read_secret(args)
    box = config.secret_box()
    record = run(
        config,
        lambda s: managed.renew_connection(
            s,
            config.catalog,
            box,
            args.app_id,
            args.key,
            secret,
            interface="cli",
            **_expiry(args),
        ),
    )
    show(managed.connection_view(record), args.json)
    return 0


def _remove_parser(p: argparse.ArgumentParser) -> None:
    connection_arg(p, json_flag=False)


def _remove(args: argparse.Namespace) -> int:
    config = load(args)
    run(
        config,
        lambda s: managed.remove_connection(s, config.catalog, args.app_id, interface="cli"),
    )
    print(f"removed connection {args.app_id}; it answers 404 within [store] cache_ttl")
    return 0


def _import_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("toml", metavar="TOML", help="the file whose districts and connections to copy")
    config_arg(p, json_flag=False)
    p.add_argument("--dry-run", action="store_true", help="list what would be done, change nothing")


def _import(args: argparse.Namespace) -> int:
    return import_file(load(args), args.toml, dry_run=args.dry_run)


#: action -> (help, parser setup, run)
ACTIONS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = {
    "add": ("a connection in the store (secret on stdin or --secret-env)", _add_parser, _add),
    "list": ("the config file's and the store's connections", _list_parser, _list),
    "show": ("one connection; never its secret", _show_parser, _show),
    "update": ("scopes, enable/disable, expiry of a store connection", _update_parser, _update),
    "renew": ("new key and secret (secret on stdin or --secret-env)", _renew_parser, _renew),
    "remove": ("remove a store connection", _remove_parser, _remove),
    "import": ("copy another TOML file's districts and connections", _import_parser, _import),
    "invite": ("a one-time district intake link (last line of stdout)", invite_parser, invite),
}


def register(sub: Commands) -> None:
    group = sub.add_parser("connections", help="district connections kept in the store")
    group.set_defaults(run=main)
    actions = group.add_subparsers(dest="connections_command", required=True, metavar="ACTION")
    for name, (text, setup, _) in ACTIONS.items():
        setup(actions.add_parser(name, help=text))


def main(args: argparse.Namespace) -> int:
    return ACTIONS[args.connections_command][2](args)
