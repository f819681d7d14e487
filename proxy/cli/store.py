"""``store rekey``: every store secret sealed again with the first of ``[store] secret_keys``.

docs/commands.md, key rotation: put the new key first in ``secret_keys``
(the old one after it), run ``store rekey``, then drop the old key. Secrets already sealed with
the first key are left as they are, so the command can be run again after an interruption.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from proxy.cli._managed import config_arg, load, run
from proxy.store.base import AuditEvent, Store
from proxy.tokens import now_utc

if TYPE_CHECKING:
    from proxy.cli._common import Commands

PAGE = 500


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
        box.seal("-", "-")  # the one-line error naming store.secret_keys

    async def rekey(store: Store) -> tuple[int, int]:
        done = seen = 0
        after = ""
        while True:
            page = await store.list_connections(after=after, limit=PAGE)
            for record in page:
                seen += 1
                if box.sealed_with(record.secret) == box.current_id:
                    continue
                # Opened with whichever key sealed it; a secret no key opens stops the run
                # with its appId named (nothing of it is changed).
                secret = box.open(record.app_id, record.secret)
                sealed = box.seal(record.app_id, secret)
                await store.update_connection(replace(record, secret=sealed, updated=now_utc()))
                done += 1
            if len(page) < PAGE:
                break
            after = page[-1].app_id
        await store.add_audit(
            AuditEvent(
                at=now_utc(),
                action="store.rekey",
                interface="cli",
                detail={"rekeyed": done, "connections": seen},
            )
        )
        return done, seen

    done, seen = run(config, rekey)
    print(f"re-encrypted {done} of {seen} store secret(s) with the first of store.secret_keys")
    return 0
