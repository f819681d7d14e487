"""``store rekey``: every store secret sealed again with the first of ``[store] secret_keys``.

docs/commands.md, key rotation: put the new key first in ``secret_keys``
(the old one after it), run ``store rekey``, then drop the old key. Secrets already sealed with
the first key are left as they are, so the command can be run again after an interruption.
Each secret is sealed for where its district sends (an ``orp1.`` secret of an earlier version
included); each swap names the version it read, so a change made meanwhile (a disable, a
renew) is never undone. A connection whose secret does not open is named and left as it is
(exit 1): its credentials must be entered again.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from proxy.cli._managed import config_arg, load, run
from proxy.connections import managed
from proxy.store.base import AuditEvent, Store
from proxy.tokens import now_utc

if TYPE_CHECKING:
    from proxy.cli._common import Commands


def register(sub: Commands) -> None:
    group = sub.add_parser("store", help="store maintenance")
    group.set_defaults(run=main)
    actions = group.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    rekey = actions.add_parser(
        "rekey", help="re-encrypt every store secret with the first of [store] secret_keys"
    )
    config_arg(rekey, json_flag=False)


def main(args: argparse.Namespace) -> int:
    config = load(args)
    box = config.secret_box()
    if not box.can_seal:
        box.require()  # the one-line error naming store.secret_keys

    async def rekey(store: Store) -> tuple[int, int, list[str]]:
        done, seen, problems = await managed.reseal(store, box, config.districts, legacy_only=False)
        await store.add_audit(
            AuditEvent(
                at=now_utc(),
                action="store.rekey",
                interface="cli",
                detail={"rekeyed": done, "connections": seen, "left": len(problems)},
            )
        )
        return done, seen, problems

    done, seen, problems = run(config, rekey)
    print(f"re-encrypted {done} of {seen} store secret(s) with the first of store.secret_keys")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0
