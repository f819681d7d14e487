"""The access ledger in the Redis store (``LedgerStore`` of ``base.py``). Mixed into
``RedisStore``. Layout (``orp:`` is the default prefix):

    orp:ledger                     sorted set of "<day>|<appId>|<collection>", scored by the
                                   day's ordinal (listing and pruning by day)
    orp:ledger:<day>|<app>|<coll>  hash: vendor, district, requests, records, bytes, s:<class>
    orp:ledgerf:<day>|<app>|<coll> set of the field names delivered

A batch is one MULTI/EXEC pipeline of HINCRBY and SADD, so counts from several workers and
replicas add up and a reader never sees half a batch.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from proxy.store.base import LedgerRow
from proxy.store.redis_rows import RedisRole


def _member(row: LedgerRow) -> str:
    return f"{row.day.isoformat()}|{row.app}|{row.collection}"


class RedisLedger(RedisRole):
    """The ``LedgerStore`` methods of ``RedisStore``."""

    async def add_ledger(self, rows: list[LedgerRow]) -> None:
        if not rows:
            return
        index = self._key("ledger")
        with self._unavailable("add_ledger"):
            pipe = self._client.pipeline(transaction=True)
            for row in rows:
                member = _member(row)
                counts = self._key("ledger", member)
                pipe.hset(counts, mapping={"vendor": row.vendor, "district": row.district})
                for name, n in (
                    ("requests", row.requests),
                    ("records", row.records),
                    ("bytes", row.bytes),
                    *((f"s:{k}", v) for k, v in row.status.items()),
                ):
                    pipe.hincrby(counts, name, n)
                if row.fields:
                    pipe.sadd(self._key("ledgerf", member), *row.fields)
                pipe.zadd(index, {member: row.day.toordinal()})
            await pipe.execute()

    async def list_ledger(
        self, *, app: str | None = None, vendor: str | None = None, since: date | None = None
    ) -> list[LedgerRow]:
        low = since.toordinal() if since is not None else "-inf"
        with self._unavailable("list_ledger"):
            found_members = await self._client.zrangebyscore(self._key("ledger"), low, "+inf")
            members = [str(m) for m in found_members if app is None or str(m).split("|")[1] == app]
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                pipe.hgetall(self._key("ledger", member))
                pipe.smembers(self._key("ledgerf", member))
            found: list[Any] = await pipe.execute() if members else []
        rows = []
        for i, member in enumerate(members):
            counts, names = found[2 * i], found[2 * i + 1]
            if not counts:
                continue
            day, app_id, collection = member.split("|", 2)
            row = LedgerRow(
                app=app_id,
                vendor=counts.get("vendor", ""),
                district=counts.get("district", ""),
                day=date.fromisoformat(day),
                collection=collection,
                requests=int(counts.get("requests", 0)),
                records=int(counts.get("records", 0)),
                bytes=int(counts.get("bytes", 0)),
                status={k[2:]: int(v) for k, v in counts.items() if k.startswith("s:")},
                fields=tuple(sorted(names)),
            )
            if vendor is None or row.vendor == vendor:
                rows.append(row)
        rows.sort(key=lambda r: (r.day, r.app, r.collection))
        return rows

    async def prune_ledger(self, before: date) -> int:
        index = self._key("ledger")
        with self._unavailable("prune_ledger"):
            old = [
                str(m)
                for m in await self._client.zrangebyscore(index, "-inf", f"({before.toordinal()}")
            ]
            if not old:
                return 0
            pipe = self._client.pipeline(transaction=True)
            for member in old:
                pipe.delete(self._key("ledger", member), self._key("ledgerf", member))
            pipe.zrem(index, *old)
            await pipe.execute()
        return len(old)
