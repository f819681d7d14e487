"""What the ``districts``, ``connections`` and ``store`` commands share: the config file read
for the store only, the secret read from standard input or ``--secret-env`` (never argv), and
records printed as ``key: value`` lines or ``--json``. Changes go through
``proxy.connections.managed``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import date
from typing import Any

from proxy.cli._common import with_store
from proxy.config import as_text
from proxy.connections.partial import StoreOnly, load_store_only
from proxy.errors import ConfigError


def config_arg(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument("--config", required=True, metavar="PATH")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON")


def connection_arg(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """The ``APP_ID`` an action on one connection is about, and ``--config`` (``config_arg``)."""
    parser.add_argument("app_id", metavar="APP_ID")
    config_arg(parser, json_flag=json_flag)


def secret_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-env",
        metavar="NAME",
        help="read the secret from this environment variable "
        "(default: one line of standard input; never an argument)",
    )


def read_secret(args: argparse.Namespace) -> str | None:
    """The secret: ``--secret-env NAME``, else one line of standard input (not echoed on a
    terminal). None when there is none (the validation then says ``secret: required``)."""
    # SECURITY: never from argv, where ps and shell history would show it.
    if args.secret_env:
        value = os.environ.get(args.secret_env)
        if value is None:
            raise ConfigError([f"--secret-env: environment variable {args.secret_env} is not set"])
        return value or None
    stream = sys.stdin
    if stream is None or stream.closed:
        return None
    if stream.isatty():
        return getpass.getpass("secret (not shown): ") or None
    line = stream.readline()
    return line.removesuffix("\n").removesuffix("\r") or None


#: The store around a command's action: ``_common.with_store``, under the name these commands
#: use.
run = with_store


def load(args: argparse.Namespace) -> StoreOnly:
    return load_store_only(args.config)


def dates(value: str) -> date:
    """An argparse type: ``YYYY-MM-DD``."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'invalid date "{value}" (write e.g. 2027-06-30)') from exc


def csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, indent=2))
        return
    for key, value in view.items():
        print(f"{key}: {as_text(value)}")
