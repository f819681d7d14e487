"""District intake links: made by ``connections invite``, ``POST /admin/connections/{appId}/
invite`` and the console's "Invite" (docs/http-api.md).

A link is ``<public_url>/intake/<token>``: the token is 32 random bytes (base64url, 43
characters), and the store keeps only its SHA-256, so a copy of the store opens no link. An
invite names one appId of one vendor, the district name its connection will get, and the
"Data to Share" preset on the form; it expires (``--ttl``, default 7 days) and is spent by the
one submission that passes the checklist. It is refused up front when the appId is a config
connection (only store connections change at run time) or when the district name is already a
district that any other connection uses: an intake link can never change another connection.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from proxy.config import Config, Listen, parse_duration
from proxy.errors import BadRequest, Conflict, NotFound
from proxy.names import is_name
from proxy.scopes import SCOPES
from proxy.store.base import AuditEvent, InviteRecord, Store
from proxy.tokens import now_utc

DEFAULT_TTL = timedelta(days=7)
TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class Names:
    """What an invite is checked against, from a running proxy's config or from the CLI's
    store-only reading of the file: vendor names, the file's connections (appId -> vendor,
    district) and districts, whether a secret can be sealed, and the gateway's public base."""

    vendors: frozenset[str]
    connections: Mapping[str, tuple[str, str]]
    districts: frozenset[str]
    can_seal: bool
    public_base: str
    #: Vendors without ``vendor_authorization`` (an invite with gradebook scopes warns).
    no_vendor_key: frozenset[str] = frozenset()

    @classmethod
    def of(cls, config: Config) -> Names:
        return cls(
            vendors=frozenset(config.vendors),
            connections={a: (c.vendor, c.district) for a, c in config.connections.items()},
            districts=frozenset(config.districts),
            can_seal=bool(config.store.secret_keys),
            public_base=public_base(config.server.public_url, config.server.listen),
            no_vendor_key=frozenset(
                name for name, v in config.vendors.items() if not v.vendor_authorization
            ),
        )


def public_base(public_url: str | None, listen: Listen | None) -> str:
    """``[server] public_url``; without it, the gateway's listen address (good enough on a
    laptop; set ``public_url`` in production)."""
    if public_url:
        return public_url.rstrip("/")
    listen = listen or Listen("127.0.0.1", 8080)
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    return f"http://[{host}]:{listen.port}" if ":" in host else f"http://{host}:{listen.port}"


@dataclass(frozen=True, slots=True)
class Invite:
    """A new link: the URL (shown once) and what was stored."""

    url: str
    record: InviteRecord
    warnings: tuple[str, ...] = ()  # for the operator; the link works regardless

    def as_json(self) -> dict[str, Any]:
        return {
            "app_id": self.record.app_id,
            "vendor": self.record.vendor,
            "district_name": self.record.district_name,
            "scopes": list(self.record.scopes),
            "expires": self.record.expires.isoformat().replace("+00:00", "Z"),
            "url": self.url,
            "warnings": list(self.warnings),
        }


def invite_warnings(vendor: str, scopes: Iterable[str], names: Names) -> tuple[str, ...]:
    """What the operator should fix before the district uses the link (docs/http-api.md
    "District intake"): gradebook scopes for a vendor without ``vendor_authorization`` meet
    Infinite Campus's refusal of every gradebook request, which district IT cannot fix."""
    gradebook = sorted(s for s in scopes if s.startswith("gradebook."))
    if not gradebook or vendor not in names.no_vendor_key:
        return ()
    return (
        f"vendor {vendor!r} has no vendor_authorization, and the invite grants "
        f"{', '.join(gradebook)}: an Infinite Campus district refuses gradebook requests "
        f"without it; set [vendors.{vendor}] vendor_authorization (the vendor's key:secret) "
        "before the district connects",
    )


def parse_ttl(value: str | None, field: str = "ttl") -> timedelta:
    if value is None or not value.strip():
        return DEFAULT_TTL
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BadRequest(f"{field}: {exc}") from exc
    if seconds <= 0:
        raise BadRequest(f"{field}: must be greater than zero")
    return timedelta(seconds=seconds)


def check_scopes(scopes: Iterable[str], field: str = "scopes") -> tuple[str, ...]:
    out = []
    for i, scope in enumerate(scopes):
        if scope not in SCOPES:
            raise BadRequest(f'{field}[{i}]: unknown scope "{scope}"')
        if scope not in out:
            out.append(scope)
    return tuple(out)


async def taken(store: Store, names: Names) -> list[tuple[str, str, str]]:
    """(appId, vendor, district) of every connection, TOML and store."""
    out = [(a, vendor, district) for a, (vendor, district) in names.connections.items()]
    after = ""
    while True:
        page = await store.list_connections(after=after, limit=500)
        out += [(r.app_id, r.vendor, r.district) for r in page]
        if len(page) < 500:
            return out
        after = page[-1].app_id


async def create_invite(
    store: Store,
    names: Names,
    *,
    app_id: str,
    vendor: str,
    district_name: str | None = None,
    scopes: Iterable[str] = (),
    ttl: timedelta = DEFAULT_TTL,
    interface: str,
) -> Invite:
    """Store a new invite and record ``connection.invite``; BadRequest / NotFound / Conflict
    name what is wrong."""
    if not is_name(app_id):
        raise BadRequest(f"app_id: {app_id!r} is not a valid appId")
    if vendor not in names.vendors:
        raise NotFound(f"vendor: unknown vendor {vendor!r}")
    district = district_name or app_id
    if not is_name(district):
        raise BadRequest(f"district_name: {district!r} is not a valid district name")
    granted = check_scopes(scopes)
    if app_id in names.connections:
        raise Conflict(
            f"app_id: {app_id!r} is a connection of the config file; only store connections "
            "are changed at run time"
        )
    for other, owner, used in await taken(store, names):
        if other == app_id and owner != vendor:
            raise Conflict(f"app_id: {app_id!r} belongs to vendor {owner!r}")
        if other == app_id and used != district:
            raise Conflict(f"district_name: {app_id!r} uses district {used!r}, not {district!r}")
        if used == district and other != app_id:
            # SECURITY: the intake would rewrite that district under another connection.
            raise Conflict(
                f"district_name: {district!r} is used by connection {other!r}; choose a new name"
            )
    if not names.can_seal:
        raise BadRequest(
            "store.secret_keys is not set: the district's secret could not be stored; add it "
            "to [store] first"
        )
    if district in names.districts:
        raise Conflict(f"district_name: {district!r} is a district of the config file")
    now = now_utc()
    for pending in await store.list_invites(now):
        if pending.district_name == district:
            # SECURITY: two links for one district would let the second rewrite what the
            # first connected; one outstanding link per district.
            raise Conflict(
                f"district_name: {district!r} is named by the outstanding invite of "
                f"{pending.app_id!r}; revoke it first (invites revoke {pending.app_id})"
            )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    record = InviteRecord(
        token_hash=hash_token(token),
        app_id=app_id,
        vendor=vendor,
        district_name=district,
        scopes=granted,
        created=now,
        expires=now + ttl,
    )
    await store.add_invite(record)
    await store.add_audit(
        AuditEvent(
            at=now,
            action="connection.invite",
            interface=interface,
            vendor=vendor,
            detail={
                "app_id": app_id,
                "district": district,
                "expires": record.expires.isoformat(),
            },
        )
    )
    return Invite(
        url=f"{names.public_base}/intake/{token}",
        record=record,
        warnings=invite_warnings(vendor, granted, names),
    )


async def find_invite(store: Store, token: str) -> InviteRecord:
    """The usable invite of ``token``; NotFound, the same for spent, expired and unknown."""
    # SECURITY: a token of the wrong shape is not even looked up; every refusal is the same
    # 404, so a link's state cannot be probed.
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", token):
        raise NotFound("unknown, expired or spent intake link")
    invite = await store.get_invite(hash_token(token))
    if invite is None or not invite.usable_at(now_utc()):
        raise NotFound("unknown, expired or spent intake link")
    return invite


def invite_view(record: InviteRecord) -> dict[str, Any]:
    """An outstanding invite as ``invites list --json`` and ``GET /admin/invites`` show it:
    never the link's token (the store does not have it) nor its hash."""
    return {
        "app_id": record.app_id,
        "vendor": record.vendor,
        "district_name": record.district_name,
        "scopes": list(record.scopes),
        "created": record.created.isoformat().replace("+00:00", "Z"),
        "expires": record.expires.isoformat().replace("+00:00", "Z"),
    }


async def list_invites(store: Store) -> list[InviteRecord]:
    """Every outstanding invite (not spent, not expired), oldest first."""
    return await store.list_invites(now_utc())


async def revoke_invite(store: Store, app_id: str, *, interface: str) -> None:
    """End every outstanding link of ``app_id`` (its page answers 404 from then on) and record
    ``connection.invite_revoke``; NotFound when there is none."""
    now = now_utc()
    ended = await store.revoke_invites(app_id, now)
    if not ended:
        raise NotFound(f"no outstanding invite for {app_id!r}")
    await store.add_audit(
        AuditEvent(
            at=now,
            action="connection.invite_revoke",
            interface=interface,
            detail={"app_id": app_id, "links": ended},
        )
    )
