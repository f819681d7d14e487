"""``config validate PATH`` (SPEC.md "Install and commands", "Config (TOML)").

Every problem on its own line (key path first) and exit 1, or ``PATH: ok (...)`` and exit 0,
with any warnings on stderr (they never fail).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .. import config as config_mod
from ..errors import ConfigError
from ._common import plural

if TYPE_CHECKING:
    from ._common import Commands

ORDER = 50


def register(sub: Commands) -> None:
    cfg = sub.add_parser("config", help="configuration tools")
    cfg.set_defaults(run=run)
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    validate = csub.add_parser("validate", help="report every problem of a config file")
    validate.add_argument("path")


def run(args: argparse.Namespace) -> int:
    return validate(args.path)


def validate(path: str) -> int:
    try:
        config = config_mod.load(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: invalid ({plural(len(err.problems), 'problem')})", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    counts = [
        plural(len(config.vendors), "vendor"),
        plural(len(config.districts), "district"),
        plural(len(config.connections), "connection"),
    ]
    if config.warnings:
        counts.append(plural(len(config.warnings), "warning"))
    print(f"{path}: ok ({', '.join(counts)})")
    return 0
