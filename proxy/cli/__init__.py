"""The ``oneroster-proxy`` command: parse, call, print. The only place that exits.

docs/commands.md. Library errors become one-line messages on stderr and a
non-zero exit; a token a command issues is the last line of stdout.

One module per command group, found in this package at start (``pkgutil``), so a new group
is a new file and its name in ``HELP_ORDER``: a public module (no leading ``_``) defining
``register(sub)``, which adds its sub-parser(s) with ``set_defaults(run=...)``; ``run(args)``
returns the exit status. ``_common`` holds what
several groups share (the store around an action, tables, durations).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn, cast

from proxy import __version__, compat
from proxy.errors import ConfigError, ProxyError

#: The command groups (modules of this package) in the order ``--help`` lists them: running the
#: proxy first, then what a vendor needs, then managing districts and connections, then upkeep.
HELP_ORDER = (
    "serve",
    "tokens",
    "check",
    "districts",
    "connections",
    "invites",
    "ledger",
    "changes",
    "store",
    "config",
    "audit",
)


def command_modules() -> list[ModuleType]:
    """The command groups of this package, in ``--help`` order (``HELP_ORDER``; a module it
    does not name comes last, and tests/cli/test_main.py fails on it)."""
    names = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    rank = {name: i for i, name in enumerate(HELP_ORDER)}
    names.sort(key=lambda name: (rank.get(name, len(rank)), name))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose "required: --config" also says where else it is read from
    (sub-parsers are made of the same class)."""

    def error(self, message: str) -> NoReturn:
        names_file = "--config" in message or self.prog.endswith("config validate")
        if "required" in message and names_file:
            message += f" (or set {CONFIG_ENV} to the config file's path)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="oneroster-proxy",
        description="One stable URL and one bearer token for every district's OneRoster API.",
    )
    parser.add_argument("--version", action="version", version=f"oneroster-proxy {__version__}")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="log lines as JSON or text (default: JSON for serve, text for other commands)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        module.register(sub)
    for command in _parsers(parser):
        _everywhere(command)
    return parser


LOG_FORMATS = ("json", "text")
# Commands whose log is read by machines (a log collector); every other one talks to a person.
_JSON_LOG_COMMANDS = frozenset({"serve"})


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every sub-parser below ``parser``, at any depth."""
    found = []
    for child in compat.subparsers(parser):
        found += [child, *_parsers(child)]
    return found


def _everywhere(parser: argparse.ArgumentParser) -> None:
    """What every command accepts: ``--log-format`` after the subcommand as well as before
    it, and ``--config`` from ``ORP_CONFIG`` when the flag is absent (docs/commands.md)."""
    if not parser.add_help:
        return  # the sandbox: its own parser reads the rest of the line
    if compat.option_action(parser, "--log-format") is None:
        parser.add_argument(
            "--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    action = compat.option_action(parser, "--config")
    if action is not None:
        env = os.environ.get(CONFIG_ENV)
        action.help = f"the config file (default: ${CONFIG_ENV})"
        if env:
            action.required = False
            action.default = env


CONFIG_ENV = "ORP_CONFIG"


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sandbox":
        # The sandbox parses its own arguments (its --help included).
        from proxy.cli.serve import run_sandbox

        sys.exit(run_sandbox(argv[1:]))
    args = build_parser().parse_args(argv)
    from proxy.logs import setup_logging

    log_format = args.log_format or ("json" if args.command in _JSON_LOG_COMMANDS else "text")
    setup_logging(log_format)
    run = cast(Callable[[argparse.Namespace], int], args.run)
    try:
        code = run(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
    except BrokenPipeError:
        # ``| head`` read what it wanted and left: not an error. Output from now on (the
        # interpreter's own flush at exit included) goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        code = 2
    except ProxyError as err:
        print(f"error: {err.description}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


__all__ = ["build_parser", "main"]
