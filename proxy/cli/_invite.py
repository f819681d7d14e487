"""``connections invite APP_ID --vendor V [--district-name NAME] [--scopes S1,S2] [--ttl 7d]``
(docs/commands.md, docs/http-api.md): a one-time intake link, printed as
the last line of standard output.

Like every store command it reads only what it needs from the file: ``[store]``, the names of
vendors, districts and connections, and from ``[server]`` just ``public_url`` and ``listen``
(the link's base); no district secret is resolved. The link is shown this once: the store
keeps only the SHA-256 of its token.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from typing import Any

from proxy import config as config_mod
from proxy.cli._managed import connection_arg, csv, load, run
from proxy.connections.invites import Names, create_invite, parse_ttl, public_base
from proxy.errors import ConfigError


def invite_parser(p: argparse.ArgumentParser) -> None:
    connection_arg(p, json_flag=False)
    p.add_argument("--vendor", required=True, metavar="V")
    p.add_argument("--district-name", metavar="NAME", help="the district's name (default APP_ID)")
    p.add_argument(
        "--scopes", type=csv, default=[], metavar="S1,S2", help='"Data to Share" preset on the form'
    )
    p.add_argument("--ttl", default="7d", metavar="DURATION", help="how long the link works")


def _gateway_base(path: str) -> str:
    """``[server] public_url`` (or ``listen``) of ``path``, ``${...}`` resolved for those two
    keys only."""
    with open(path, "rb") as fh:
        server = tomllib.load(fh).get("server", {})
    if not isinstance(server, dict):
        raise ConfigError(["server: must be a table"])
    table = {k: server[k] for k in ("public_url", "listen") if k in server}
    cfg = config_mod.validate({"server": table}, os.environ).server
    return public_base(cfg.public_url, cfg.listen)


def invite(args: argparse.Namespace) -> int:
    config = load(args)
    connections: dict[str, tuple[str, str]] = {}
    for app_id, table in config.connections.items():
        raw: Any = table if isinstance(table, dict) else {}
        connections[app_id] = (str(raw.get("vendor", "")), str(raw.get("district", "")))
    names = Names(
        vendors=frozenset(config.vendors),
        connections=connections,
        districts=frozenset(config.districts),
        can_seal=config.secret_box().can_seal,
        public_base=_gateway_base(config.source),
        no_vendor_key=frozenset(
            name
            for name, table in config.vendors.items()
            if not (isinstance(table, dict) and table.get("vendor_authorization"))
        ),
    )
    ttl = parse_ttl(args.ttl, "--ttl")
    made = run(
        config,
        lambda store: create_invite(
            store,
            names,
            app_id=args.app_id,
            vendor=args.vendor,
            district_name=args.district_name,
            scopes=args.scopes,
            ttl=ttl,
            interface="cli",
        ),
    )
    record = made.record
    for warning in made.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    until = record.expires.strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"intake link for {record.app_id} (vendor {record.vendor}, district "
        f"{record.district_name}), works once, until {until}; send it to the district's IT:"
    )
    print(made.url, flush=True)
    return 0
