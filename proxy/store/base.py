"""The store interface, split by role: tokens, districts and connections, audit, background
checks and intake links, limits, the access ledger.

Two backends implement every role: ``SqliteStore`` (embedded, the default, one host) and
``RedisStore`` (several replicas). One conformance suite per role (``tests/store/test_*.py``)
runs unchanged against both. The gateway never calls the store per request for a token or a
connection it has seen within ``[store] cache_ttl``: see ``proxy.gateway.inbound`` and
``proxy.gateway.resolve``.

Districts and connections (docs/commands.md) are kept as records whose
fields are the keys of ``[districts.X]`` and ``[connections.X]``; a connection's secret is kept
only sealed (``proxy.store.crypto``), never in clear.

Every backend failure (file unreadable, connection refused, timeout) is raised as
``proxy.errors.StoreUnavailable`` so the gateway answers 503, never 500. A name already taken
or a district still in use is ``proxy.errors.Conflict`` (409).

Districts and connections carry a ``version``, raised by one at each write: an update names the
version it read and is refused (``proxy.errors.Stale``, nothing written) if the record moved on
meanwhile, so no writer overwrites a change it did not see. A write that changes what operators
audit takes the ``AuditEvent`` and writes it in the same transaction (sqlite) or script (redis):
the change and its event are both kept or neither (docs/commands.md, "Audit").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

#: The OneRoster versions a district serves when nothing narrows them.
ALL_VERSIONS: tuple[str, ...] = ("v1p1", "v1p2")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One vendor token as stored: never the secret, only its hash."""

    id: str
    vendor: str
    secret_hash: str
    prefix: str
    created: datetime
    expires: datetime | None = None
    revoked: datetime | None = None
    last_used: datetime | None = None

    def active_at(self, now: datetime) -> bool:
        if self.revoked is not None and self.revoked <= now:
            return False
        return self.expires is None or now < self.expires


@dataclass(frozen=True, slots=True)
class DistrictRecord:
    """A district kept in the store: the keys of ``[districts.X]``, as validated values.
    Durations and rates keep the text they were written with (``"10s"``, ``"600/m"``)."""

    name: str
    base_url: str
    created: datetime
    updated: datetime
    auth: str = "oauth1"
    signature_method: str = "HMAC-SHA256"
    token_url: str | None = None
    vendor_authorization: bool = False
    versions: tuple[str, ...] = ALL_VERSIONS
    max_connections: int | None = None
    max_wait: str | None = None
    rate_limit: str | None = None
    # docs/configuration.md "SIS courtesy": the zone name, and the windows and pauses as
    # JSON text of their config tables (None: the default UTC, none).
    timezone: str | None = None
    windows: str | None = None
    pauses: str | None = None
    version: int = 0  # raised by one at every write (compare-and-set)


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """A connection kept in the store. ``secret`` is the sealed secret
    (``proxy.store.crypto``), never the secret itself."""

    app_id: str
    vendor: str
    district: str
    key: str
    secret: str = field(repr=False)
    scopes: tuple[str, ...]
    created: datetime
    updated: datetime
    enabled: bool = True
    expires: date | None = None
    source: str = "store"
    version: int = 0  # raised by one at every write (compare-and-set)
    # The sharing policy's fields (docs/configuration.md); None: the default policy.
    drop_fields: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class VendorAuth:
    """What the store keeps of a vendor's JWT grant (docs/http-api.md).

    ``jwt_not_before``: a JWT of this vendor issued at or before this instant is refused (the
    kill switch of ``tokens revoke --all`` and of a changed or removed ``client_secret``).
    ``secret_fingerprint``: a salted, slow hash of the ``client_secret`` last loaded (or
    ``"none"`` when the vendor had none), so that a replica loading a different secret can
    tell, without the secret itself ever reaching the store."""

    jwt_not_before: datetime | None = None
    secret_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One operator action: token issue/rotate/revoke, config reload."""

    at: datetime
    # "token.issue", "token.rotate", "token.revoke", "token.revoke_all", "config.reload",
    # "district.add", "district.update", "district.remove", "connection.add", "connection.update",
    # "connection.renew", "connection.remove", "store.rekey", ...
    action: str
    interface: str  # "cli", "admin", "signal"
    vendor: str | None = None
    token_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


#: Checklist results kept per connection (docs/checklist.md "Background checks": the last 20).
CHECK_HISTORY = 20


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One checklist run of one connection: the ``check --json`` document and when it ran."""

    app_id: str
    at: datetime
    document: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.document.get("ok"))

    def as_json(self) -> dict[str, Any]:
        """``last_check`` of ``GET /admin/connections/{appId}``: the document plus ``at``."""
        return {**self.document, "at": self.at.isoformat().replace("+00:00", "Z")}


@dataclass(frozen=True, slots=True)
class InviteRecord:
    """A district intake link (docs/http-api.md "District intake"): only the hash of its token is
    kept."""

    token_hash: str
    app_id: str
    vendor: str
    district_name: str
    scopes: tuple[str, ...]
    created: datetime
    expires: datetime
    spent: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        return self.spent is None and now < self.expires


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """What one connection's vendor received of one collection on one UTC day (docs/http-api.md
    ``GET /admin/ledger``): counts and field names, never a value."""

    app: str
    vendor: str
    district: str
    day: date
    collection: str
    requests: int = 0
    records: int = 0
    bytes: int = 0
    status: dict[str, int] = field(default_factory=dict)  # "2xx" -> answers
    fields: tuple[str, ...] = ()  # sorted

    def as_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "vendor": self.vendor,
            "district": self.district,
            "day": self.day.isoformat(),
            "collection": self.collection,
            "requests": self.requests,
            "records": self.records,
            "bytes": self.bytes,
            "status": dict(sorted(self.status.items())),
            "fields": list(self.fields),
        }


def merge_ledger(old: LedgerRow | None, new: LedgerRow) -> LedgerRow:
    """Two counts of one (app, day, collection) added up (each worker flushes its own)."""
    if old is None:
        return new
    status = dict(old.status)
    for name, n in new.status.items():
        status[name] = status.get(name, 0) + n
    return LedgerRow(
        app=new.app,
        vendor=new.vendor,
        district=new.district,
        day=new.day,
        collection=new.collection,
        requests=old.requests + new.requests,
        records=old.records + new.records,
        bytes=old.bytes + new.bytes,
        status=status,
        fields=tuple(sorted(set(old.fields) | set(new.fields))),
    )


class Lifecycle(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers."""


class TokenStore(Protocol):
    """Vendor tokens: issue, look up, rotate, revoke, last use."""

    async def add_token(self, record: TokenRecord, *, audit: AuditEvent | None = None) -> None:
        """Keep ``record`` and, in the same write, ``audit``."""

    async def get_token(self, token_id: str) -> TokenRecord | None: ...

    async def list_tokens(self, vendor: str | None = None) -> list[TokenRecord]:
        """Every token (or every token of ``vendor``), oldest first, revoked ones included."""

    async def revoke_token(
        self, token_id: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> bool:
        """Mark revoked at ``at`` and keep ``audit`` in the same write; False (and no event)
        if no such token (or already revoked)."""

    async def revoke_vendor(
        self, vendor: str, at: datetime, *, audit: AuditEvent | None = None
    ) -> list[str]:
        """Revoke every unrevoked token of ``vendor``; returns their ids. ``audit`` is kept in
        the same write, with ``detail["token_ids"]`` set to those ids."""

    async def expire_vendor(self, vendor: str, at: datetime, keep: str) -> list[str]:
        """Rotation grace: every other active token of ``vendor`` expires at ``at`` at the
        latest (an earlier expiry stays). ``keep`` is the new token's id. Returns the ids.

        The ids returned are those whose expiry moved: unrevoked tokens that would otherwise
        have lived past ``at``, oldest first."""

    async def get_vendor_auth(self, vendor: str) -> VendorAuth | None:
        """The vendor's JWT "not before" and secret fingerprint; None if never recorded."""

    async def set_jwt_not_before(self, vendor: str, at: datetime) -> None:
        """End the vendor's JWTs issued at or before ``at``. The time only moves forward: an
        earlier ``at`` than the one stored changes nothing."""

    async def set_secret_fingerprint(
        self, vendor: str, fingerprint: str, *, not_before: datetime | None = None
    ) -> None:
        """Record the fingerprint of the vendor's current ``client_secret`` and, in the same
        write, move its JWT "not before" to ``not_before`` (when given and later)."""

    async def touch(self, last_used: dict[str, datetime]) -> None:
        """Record last use of tokens, batched by the gateway (never per request)."""

    async def count_active(self, at: datetime) -> dict[str, int]:
        """Unexpired, unrevoked tokens per vendor (``tokens_active`` metric). A vendor whose
        tokens are all revoked or expired maps to 0, so its gauge falls rather than going stale."""


class ConnectionStore(Protocol):
    """Districts and connections managed at run time (docs/commands.md).

    Writes are all-or-nothing: a refused write (``Conflict``, ``NotFound``) changes nothing.
    """

    async def add_district(
        self, record: DistrictRecord, *, audit: AuditEvent | None = None
    ) -> None:
        """Conflict if the name is taken. Stored at version 1."""

    async def get_district(self, name: str) -> DistrictRecord | None: ...

    async def list_districts(self) -> list[DistrictRecord]:
        """Every district, by name."""

    async def update_district(
        self,
        record: DistrictRecord,
        *,
        reseal: Mapping[str, tuple[int, str]] | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        """Replace the district of ``record.name`` (``created`` stays) if its stored version
        is still ``record.version``; NotFound if none, Stale if it moved on. ``reseal``
        (appId -> (version read, new sealed secret)) names every connection of the district,
        each re-sealed for the new values in the same step: Stale, and nothing written, if
        the district's connections are not exactly those, at those versions."""

    async def remove_district(self, name: str, *, audit: AuditEvent | None = None) -> None:
        """NotFound if none; Conflict (naming one appId) while a store connection uses it."""

    async def add_connection(
        self,
        record: ConnectionRecord,
        *,
        district_in_store: bool,
        audit: AuditEvent | None = None,
    ) -> None:
        """Conflict if the appId is taken. With ``district_in_store``, NotFound unless the
        district is in the store, checked in the same step as the write (a district removed
        meanwhile cannot be left with a connection). Stored at version 1."""

    async def get_connection(self, app_id: str) -> ConnectionRecord | None: ...

    async def resolve_connection(
        self, app_id: str
    ) -> tuple[ConnectionRecord, DistrictRecord | None] | None:
        """The connection and its district (None when the district is not in the store) in
        one round trip: what the gateway reads for an appId it has not cached."""

    async def list_connections(
        self, *, vendor: str | None = None, after: str = "", limit: int = 500
    ) -> list[ConnectionRecord]:
        """One page of connections ordered by appId, those after ``after`` (exclusive), at
        most ``limit``; a short page is the last. ``vendor`` keeps only that vendor's."""

    async def update_connection(
        self, record: ConnectionRecord, *, audit: AuditEvent | None = None
    ) -> None:
        """Replace the connection of ``record.app_id`` (``created`` stays) if its stored
        version is still ``record.version`` (then one more); NotFound if none, Stale if it
        moved on. The district does not change (remove and add to move a connection)."""

    async def remove_connection(self, app_id: str, *, audit: AuditEvent | None = None) -> None:
        """NotFound if none."""


class AuditStore(Protocol):
    """The operator audit trail (``oneroster-proxy audit``)."""

    async def add_audit(self, event: AuditEvent) -> None: ...

    async def list_audit(self, limit: int = 1000) -> list[AuditEvent]:
        """Newest last."""


class CheckStore(Protocol):
    """Background check results and district intake links (docs/checklist.md,
    "District intake")."""

    async def add_check_result(self, result: CheckResult) -> None:
        """Keep ``result``; only the newest ``CHECK_HISTORY`` of its connection stay."""

    async def list_check_results(
        self, app_id: str, limit: int = CHECK_HISTORY
    ) -> list[CheckResult]:
        """The connection's results, newest first."""

    async def last_check_results(self, app_ids: list[str]) -> dict[str, list[CheckResult]]:
        """The two newest results of each connection that has any (newest first), in one
        round trip: enough for ``check_ok`` and for "failed twice in a row"."""

    async def add_invite(self, invite: InviteRecord) -> None:
        """ValueError if an invite with that token hash exists."""

    async def get_invite(self, token_hash: str) -> InviteRecord | None: ...

    async def spend_invite(self, token_hash: str, at: datetime) -> bool:
        """Mark the invite spent at ``at`` if it is still usable then; True for exactly one
        caller, however many replicas race for it."""


@dataclass(frozen=True, slots=True)
class IntakeSave:
    """What a spent intake link saves: the link (its token's hash), when, the district and the
    connection (its secret sealed), and the audit event written in the same step."""

    token_hash: str
    at: datetime
    district: DistrictRecord
    connection: ConnectionRecord
    audit: AuditEvent | None = None


class IntakeStore(Protocol):
    """Outstanding intake links, their revocation, and the one step that spends a link and
    saves what it connected (THREAT_MODEL.md "The intake link")."""

    async def list_invites(self, at: datetime) -> list[InviteRecord]:
        """Every invite still usable at ``at`` (not spent, not expired), oldest first."""

    async def revoke_invites(self, app_id: str, at: datetime) -> int:
        """Spend every usable invite of ``app_id`` at ``at``; how many there were."""

    async def save_intake(self, save: IntakeSave) -> bool:
        """In one step: the invite of ``save.token_hash`` must be usable at ``save.at`` (else
        NotFound), no connection but ``connection.app_id`` may use ``district.name`` and an
        existing ``connection.app_id`` must have the same vendor and district (else Conflict);
        then the district and connection are written (``created`` of existing ones stays) and
        the invite is spent. A refusal writes nothing. True when the connection is new."""


class SessionStore(Protocol):
    """Console sessions (docs/http-api.md "Console"), by an id derived from the session's
    nonce: ended by sign-out for every process, and kept across restarts."""

    async def add_session(self, session_id: str, expires: datetime) -> None: ...

    async def session_active(self, session_id: str, at: datetime) -> bool:
        """True while the session was added, not ended, and ``at`` is before its end."""

    async def end_session(self, session_id: str) -> None:
        """Nothing happens for an unknown or ended session."""


class LimitStore(Protocol):
    """Shared limiter state: kept in the store so that every worker and replica using the
    same store enforces one limit, not one limit each."""

    async def take_tokens(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """Token bucket ``key`` (``rate`` tokens per second, at most ``burst``, full when new):
        take ``cost`` tokens and return 0.0, or take nothing and return the seconds until
        ``cost`` tokens will be there. ``cost > burst`` or ``rate <= 0`` is a ValueError."""

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl: float) -> bool:
        """Semaphore ``key`` with ``limit`` slots: take one for ``holder`` (or renew the one it
        holds) for ``ttl`` seconds; False if all are held. A holder that never releases (a
        crashed process) loses its slot after ``ttl``. ``limit < 1`` or ``ttl <= 0`` is a
        ValueError."""

    async def release_slot(self, key: str, holder: str) -> None:
        """Give back ``holder``'s slot of ``key``; nothing happens if it holds none."""


class LedgerStore(Protocol):
    """The access ledger (docs/http-api.md ``GET /admin/ledger``): counts per connection, UTC
    day and collection, written in batches off the request path."""

    async def add_ledger(self, rows: list[LedgerRow]) -> None:
        """Add ``rows`` to what is kept: counts add up, field names join (``merge_ledger``)."""

    async def list_ledger(
        self, *, app: str | None = None, vendor: str | None = None, since: date | None = None
    ) -> list[LedgerRow]:
        """Rows of ``app`` / ``vendor`` from ``since`` on (inclusive), by day, app, collection."""

    async def prune_ledger(self, before: date) -> int:
        """Forget the days before ``before``; returns how many rows went."""


class Store(
    Lifecycle,
    TokenStore,
    ConnectionStore,
    AuditStore,
    CheckStore,
    IntakeStore,
    SessionStore,
    LimitStore,
    LedgerStore,
    Protocol,
):
    """Everything the proxy needs from a store. All times are timezone-aware UTC datetimes.
    Code that needs one role takes that role's protocol."""


def validate_bucket(rate: float, burst: float, cost: float) -> None:
    """The ValueError of ``Store.take_tokens`` for arguments no bucket can serve."""
    if rate <= 0:
        raise ValueError(f"token bucket rate must be positive, got {rate}")
    if cost <= 0 or cost > burst:
        raise ValueError(f"token bucket cost must be in (0, burst={burst}], got {cost}")


def validate_slot(limit: int, ttl: float) -> None:
    """The ValueError of ``Store.acquire_slot`` for a limit or ttl that makes no semaphore."""
    if limit < 1:
        raise ValueError(f"slot limit must be at least 1, got {limit}")
    if ttl <= 0:
        raise ValueError(f"slot ttl must be positive, got {ttl}")
