"""One walk of the change feed: hash every record, diff against the last complete walk,
publish the changes or hold them.

docs/http-api.md "Change feed". Per record only its ``sourcedId`` and a keyed hash are kept:
HMAC-SHA256 (RFC 2104) of the record as the vendor receives it, with a key derived by HKDF
(RFC 5869) from the first of ``[store] secret_keys``, which the store never holds. A record
new since the last complete walk is ``created``, a changed hash ``updated``; a sourcedId of
the last walk that this one did not see (or saw with ``status: "tobedeleted"``) is
``deleted``. A walk that does not complete changes nothing; one whose deletions of a
collection exceed ``max_deletions`` is held until an operator accepts or discards it.

A walk of a connection runs on one process at a time (a slot of the store, as the background
checks take, renewed while it runs); one left running by a process that died is found by the
next walk, whose staging replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proxy.changes.pages import Incomplete, Page, allowed, pages
from proxy.config.model import parse_deletions
from proxy.errors import Conflict, NotFound, ProxyError
from proxy.gateway.context import Services
from proxy.gateway.runtime import Connection
from proxy.store.base import AuditEvent, Store, WalkRecord
from proxy.store.crypto import key_id
from proxy.store.lock import held

log = logging.getLogger("oneroster_proxy.changes")

#: The store slot a connection's walk holds (one process at a time).
LOCK_PREFIX = "changes-walk:"
LOCK_TTL = 60.0
#: What HKDF derives the hash key for (RFC 5869 §3.2 "info").
HKDF_INFO = b"oneroster-proxy change feed record hash v1"
#: Pages read ahead of the one being hashed (besides the one on its way).
QUEUED = 2
#: Hex digits kept of each HMAC-SHA256 (128 bits: collisions are out of reach).
DIGEST_HEX = 32


def hash_key(secret_key: bytes) -> bytes:
    """The record-hash key of one ``secret_keys`` entry: HKDF-SHA256 of it."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key)


def walk_keys(secret_keys: tuple[bytes, ...], base_id: str | None) -> tuple[str, Any, Any]:
    """``(key id, mac, mac to compare with)``: new hashes are made with the first key; they
    are compared with the last walk's as made with that walk's key while it is still listed
    (a rotation then reports nothing as updated), else with the first (every record is
    ``updated`` once)."""
    if not secret_keys:
        raise Conflict("the change feed needs [store] secret_keys (its hashes are keyed)")
    first = secret_keys[0]
    mac = keyed(hash_key(first))
    compare = mac
    if base_id is not None and base_id != key_id(first):
        old = next((k for k in secret_keys if key_id(k) == base_id), None)
        if old is not None:
            compare = keyed(hash_key(old))
    return key_id(first), mac, compare


def vendor_view(conn: Connection, collection: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as the vendor receives it from this connection: the one place where a
    connection's field filtering applies before hashing (records are otherwise forwarded
    as the district sends them)."""
    return record


def keyed(key: bytes) -> Any:
    """An HMAC-SHA256 with ``key`` set up once; ``digest`` copies it per record."""
    return hmac.new(key, digestmod=hashlib.sha256)


def digest(mac: Any, record: dict[str, Any]) -> str:
    """The record's hash: HMAC-SHA256 of its canonical JSON (keys sorted, no spaces)."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = mac.copy()
    h.update(canonical.encode("utf-8"))
    return str(h.hexdigest()[:DIGEST_HEX])


@dataclass
class Progress:
    """What a walk reports as it goes (``changes walk`` draws it on a terminal)."""

    collection: str = ""
    seen: int = 0
    total: int | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


Report = Callable[[Progress], None]


class Walk:
    """One walk of one connection; ``run()`` does it all and returns the kept record."""

    def __init__(
        self,
        services: Services,
        conn: Connection,
        *,
        holder: str | None = None,
        report: Report | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.services = services
        self.conn = conn
        self.app_id = conn.app_id
        self.holder = holder or f"walk-{secrets.token_hex(8)}"
        self.report = report or (lambda progress: None)
        self.now = now
        self.walk_id = secrets.token_hex(8)
        self.collections = allowed(conn.config.scopes)
        self.progress = Progress()
        self.totals: dict[str, int | None] = {}

    async def run(self) -> WalkRecord:
        """Walk, diff and publish (or hold); Conflict if another process walks this connection."""
        lock = LOCK_PREFIX + self.app_id
        async with held(self.services.store, lock, self.holder, LOCK_TTL) as mine:
            if not mine:
                raise Conflict(f"a walk of {self.app_id} is already running")
            return await self._locked()

    async def _locked(self) -> WalkRecord:
        store = self.services.store
        previous = await store.get_walk(self.app_id)
        if previous is not None and previous.state in ("running", "held"):
            # Left by a process that died mid-walk, or held for an operator: this walk diffs
            # against the same last complete walk and takes its place.
            await store.drop_walk(self.app_id, previous.walk_id)
        walk = WalkRecord(self.app_id, self.walk_id, "running", self.now())
        await store.save_walk(walk)
        try:
            keys = self.services.runtime.current.config.store.secret_keys
            made_with, mac, compare = walk_keys(keys, await store.hashes_key(self.app_id))
            walk = replace(walk, key_id=made_with)
            before = {c: await store.known_count(self.app_id, c) for c in self.collections}
            await self._walk(mac, compare)
        except (Incomplete, ProxyError) as exc:
            reason = str(exc) if isinstance(exc, Incomplete) else exc.description
            with contextlib.suppress(ProxyError):
                await store.drop_walk(self.app_id, self.walk_id)
            failed = replace(
                walk, state="failed", finished=self.now(), counts=self.progress.counts,
                error=reason,
            )  # fmt: skip
            with contextlib.suppress(ProxyError):
                await store.save_walk(failed)
            log.warning(
                "change feed walk did not complete",
                extra={"fields": {"event": "changes.failed", "app": self.app_id, "why": reason}},
            )
            return failed
        done = replace(walk, finished=self.now(), counts=self.progress.counts)
        limit = parse_deletions(self.conn.config.max_deletions)
        over = [
            c
            for c in self.collections
            if not limit.allows(self.progress.counts[c]["deleted"], before[c])
        ]
        if over:
            waiting = replace(done, state="held", error=_held_reason(done, over, before))
            await store.save_walk(waiting)
            log.warning(
                "change feed walk held",
                extra={
                    "fields": {"event": "changes.held", "app": self.app_id, "why": waiting.error}
                },
            )
            return waiting
        published = replace(done, state="published")
        await store.publish_walk(published, self.collections)
        return published

    async def _walk(self, mac: Any, compare: Any) -> None:
        """Every page of every collection, in order. A producer reads the district while
        this hashes and stages the pages before: one page is processed, ``QUEUED`` wait and one
        is on its way, whatever the collection, so the district is never idle for our sake."""
        queue: asyncio.Queue[tuple[str, Page | None] | BaseException] = asyncio.Queue(QUEUED)
        producer = asyncio.get_running_loop().create_task(self._produce(queue))
        try:
            finished = 0
            while finished < len(self.collections):
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                collection, page = item
                if page is None:
                    await self._deletions(collection)
                    finished += 1
                else:
                    await self._page(collection, page, mac, compare)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def _produce(self, queue: asyncio.Queue[tuple[str, Page | None] | BaseException]) -> None:
        try:
            for collection in self.collections:

                def on_total(total: int | None, collection: str = collection) -> None:
                    self.totals[collection] = total

                async for page in pages(self.services, self.conn, collection, on_total=on_total):
                    await queue.put((collection, page))
                await queue.put((collection, None))
        except Exception as exc:  # the walk's to report (a bug too, rather than a hang)
            await queue.put(exc)

    def _counts(self, collection: str) -> dict[str, int]:
        counts = self.progress.counts.get(collection)
        if counts is None:
            counts = {"records": 0, "created": 0, "updated": 0, "deleted": 0}
            self.progress.counts[collection] = counts
            self.progress.collection = collection
            self.progress.seen = 0
        return counts

    async def _page(self, collection: str, page: Page, mac: Any, compare: Any) -> None:
        store, app_id, walk_id = self.services.store, self.app_id, self.walk_id
        counts = self._counts(collection)
        self.progress.total = self.totals.get(collection)
        rows: dict[str, str] = {}
        # The hashes to compare with the last walk's, when its key was another one.
        before: dict[str, str] = {}
        for record in page:
            sourced_id = record.get("sourcedId")
            if not isinstance(sourced_id, str) or not sourced_id:
                raise Incomplete(f"{collection}: a record without a sourcedId")
            if sourced_id in rows:
                raise Incomplete(f"{collection}: sourcedId {sourced_id} came twice")
            if record.get("status") == "tobedeleted":
                rows[sourced_id] = ""  # seen, and gone for the vendor
                continue
            seen = vendor_view(self.conn, collection, record)
            rows[sourced_id] = digest(mac, seen)
            if compare is not mac:
                before[sourced_id] = digest(compare, seen)
        kept = [(sid, h) for sid, h in rows.items() if h]
        repeated = await store.stage_hashes(app_id, walk_id, collection, kept)
        if repeated:
            raise Incomplete(f"{collection}: sourcedId {repeated[0]} came twice")
        known = await store.known_hashes(app_id, collection, [sid for sid, _ in kept])
        changes = []
        for sid, h in kept:
            old = known.get(sid)
            if old is None:
                changes.append((collection, sid, "created"))
            elif old != before.get(sid, h):
                changes.append((collection, sid, "updated"))
        if changes:
            await store.stage_changes(app_id, walk_id, changes)
        counts["records"] += len(kept)
        counts["created"] += sum(1 for c in changes if c[2] == "created")
        counts["updated"] += sum(1 for c in changes if c[2] == "updated")
        self.progress.seen += len(page)
        self.report(self.progress)

    async def _deletions(self, collection: str) -> None:
        """The sourcedIds of the last complete walk this one did not see are deleted."""
        store, app_id, walk_id = self.services.store, self.app_id, self.walk_id
        counts = self._counts(collection)
        cursor: str | None = ""
        while cursor is not None:
            gone, cursor = await store.missing_ids(app_id, walk_id, collection, cursor)
            if gone:
                await store.stage_changes(
                    app_id, walk_id, [(collection, s, "deleted") for s in gone]
                )
                counts["deleted"] += len(gone)
        self.report(self.progress)


def _held_reason(walk: WalkRecord, over: list[str], before: dict[str, int]) -> str:
    return "; ".join(
        f"{c}: {walk.counts[c]['deleted']} of {before[c]} records would be deleted" for c in over
    )


async def accept(store: Store, app_id: str, interface: str) -> WalkRecord:
    """Publish the held walk of ``app_id`` as it was counted; NotFound if none is held."""
    walk = await _held(store, app_id)
    published = replace(walk, state="published", error=None)
    await store.publish_walk(published, list(walk.counts))
    await _audit(store, "changes.accept", interface, published)
    return published


async def discard(store: Store, app_id: str, interface: str) -> WalkRecord:
    """Drop the held walk of ``app_id``: nothing of it is published; NotFound if none."""
    walk = await _held(store, app_id)
    await store.drop_walk(app_id, walk.walk_id)
    discarded = replace(walk, state="discarded")
    await store.save_walk(discarded)
    await _audit(store, "changes.discard", interface, discarded)
    return discarded


async def _held(store: Store, app_id: str) -> WalkRecord:
    walk = await store.get_walk(app_id)
    if walk is None or walk.state != "held":
        raise NotFound(f"no walk of {app_id} is held")
    return walk


async def _audit(store: Store, action: str, interface: str, walk: WalkRecord) -> None:
    detail = {"app": walk.app_id, "started": walk.as_json()["started"], **walk.totals()}
    await store.add_audit(
        AuditEvent(at=datetime.now(UTC), action=action, interface=interface, detail=detail)
    )
