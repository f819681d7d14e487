"""The access ledger, counted in memory on the request path and written to the store off it
(docs/http-api.md ``GET /admin/ledger``, docs/configuration.md ``[store] ledger_days``).

A request adds to a small dict keyed by (appId, UTC day, collection): one look-up and a few
integer additions. ``flush`` hands the counts to the store in one batch (the app calls it
every few seconds and once more at shutdown); counts add up in the store, so every worker of
``serve --workers N`` and every replica flushes its own. Counts and field names only: no value
of a record is ever kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from proxy.store.base import LedgerRow, LedgerStore

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_STATUS = {n: f"{n}xx" for n in range(1, 6)}


class _Counts:
    __slots__ = ("bytes", "district", "fields", "records", "requests", "status", "vendor")

    def __init__(self, vendor: str, district: str) -> None:
        self.vendor = vendor
        self.district = district
        self.requests = 0
        self.records = 0
        self.bytes = 0
        self.status: dict[str, int] = {}
        self.fields: set[str] = set()


class Ledger:
    """This process's counts since the last flush."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int, str], _Counts] = {}
        self._pruned = 0  # the day ordinal of the last prune

    def count(
        self,
        app: str,
        vendor: str,
        district: str,
        collection: str,
        status: int,
        nbytes: int,
        records: int = 0,
        fields: Iterable[str] = (),
    ) -> None:
        """One answer delivered to the vendor of ``app``."""
        day = int(time.time() // 86400)
        key = (app, day, collection)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _Counts(vendor, district)
        counts.requests += 1
        counts.records += records
        counts.bytes += nbytes
        name = _STATUS.get(status // 100, "other")
        counts.status[name] = counts.status.get(name, 0) + 1
        counts.fields.update(fields)

    def take(self) -> list[LedgerRow]:
        """The counts so far, as rows; the ledger starts again from zero."""
        counts, self._counts = self._counts, {}
        return [
            LedgerRow(
                app=app,
                vendor=c.vendor,
                district=c.district,
                day=date.fromordinal(_EPOCH_ORDINAL + day),
                collection=collection,
                requests=c.requests,
                records=c.records,
                bytes=c.bytes,
                status=dict(c.status),
                fields=tuple(sorted(c.fields)),
            )
            for (app, day, collection), c in counts.items()
        ]

    def give_back(self, rows: list[LedgerRow]) -> None:
        """Rows a failed flush could not write: counted again with the next batch."""
        for row in rows:
            day = row.day.toordinal() - _EPOCH_ORDINAL
            key = (row.app, day, row.collection)
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = _Counts(row.vendor, row.district)
            counts.requests += row.requests
            counts.records += row.records
            counts.bytes += row.bytes
            for name, n in row.status.items():
                counts.status[name] = counts.status.get(name, 0) + n
            counts.fields.update(row.fields)

    async def flush(self, store: LedgerStore, keep_days: int) -> None:
        """Write the counts (StoreUnavailable leaves them for the next flush), and once a day
        forget the days older than ``keep_days``."""
        rows = self.take()
        if rows:
            try:
                await store.add_ledger(rows)
            except BaseException:
                self.give_back(rows)
                raise
        today = datetime.now(UTC).date().toordinal()
        if self._pruned != today:
            await store.prune_ledger(date.fromordinal(today) - timedelta(days=keep_days))
            self._pruned = today


def parse_since(text: str, today: date) -> date:
    """``30d`` (days back from ``today``, UTC) or an ISO date ``2026-09-01``."""
    value = text.strip()
    if value.endswith("d") and value[:-1].isdigit():
        return today - timedelta(days=int(value[:-1]))
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f'invalid since "{text}" (write e.g. 30d or 2026-09-01)') from None
