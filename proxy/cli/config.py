"""``config validate PATH`` and ``config example`` (docs/commands.md).

``validate``: every problem on its own line (key path first) and exit 1, or ``PATH: ok (...)``
and exit 0, with any warnings on stderr (they never fail). ``example``: the annotated example
configuration shipped in the package (``proxy/example.toml``; ``config/example.toml`` in the
repository points to it), for
``oneroster-proxy config example > proxy.toml`` on a machine that has only the wheel.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from typing import TYPE_CHECKING

from proxy import config as config_mod
from proxy.cli._common import plural
from proxy.config.advice import advice
from proxy.errors import ConfigError

if TYPE_CHECKING:
    from proxy.cli._common import Commands


def register(sub: Commands) -> None:
    cfg = sub.add_parser("config", help="configuration tools")
    cfg.set_defaults(run=run)
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    validate = csub.add_parser("validate", help="report every problem of a config file")
    env = os.environ.get("ORP_CONFIG")
    if env:  # the one command that names its file without --config takes ORP_CONFIG too
        validate.add_argument("path", nargs="?", default=env, help="default: $ORP_CONFIG")
    else:
        validate.add_argument("path", help="the config file (or set ORP_CONFIG)")

    csub.add_parser("example", help="print the annotated example configuration")


def run(args: argparse.Namespace) -> int:
    if args.config_command == "example":
        sys.stdout.write(example_text())
        return 0
    return validate(args.path)


def example_text() -> str:
    return resources.files("proxy").joinpath("example.toml").read_text(encoding="utf-8")


def validate(path: str) -> int:
    try:
        config = config_mod.load(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: invalid ({plural(len(err.problems), 'problem')})", file=sys.stderr)
        return 1
    warnings = [*config.warnings, *advice(config_mod.read_toml(path))]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    counts = [
        plural(len(config.vendors), "vendor"),
        plural(len(config.districts), "district"),
        plural(len(config.connections), "connection"),
    ]
    if warnings:
        counts.append(plural(len(warnings), "warning"))
    print(f"{path}: ok ({', '.join(counts)})")
    return 0
