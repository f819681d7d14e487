"""What the console and the intake page change in the store: enable, disable, renew, and the
district and connection an intake link saves (docs/commands.md: only
``store`` connections change at run time).

Every change goes through ``proxy.connections.managed``, the one place the CLI and the admin API use
too, so input is refused with the same words, secrets are sealed the same way and every change is
audited the same way. The running process forgets its cached copy at once (other replicas
follow within ``[store] cache_ttl``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from proxy.config import ConnectionConfig, DistrictConfig
from proxy.connections import managed
from proxy.errors import BadRequest, ConfigError, Conflict
from proxy.gateway.context import Services
from proxy.store.base import AuditEvent, ConnectionRecord, IntakeSave, InviteRecord
from proxy.store.crypto import Binding, SecretBox
from proxy.tokens import now_utc

_VERSIONS = {"v1p1": "1.1", "v1p2": "1.2"}


def _catalog(services: Services) -> managed.ConfigEntries:
    return managed.ConfigEntries.of(services.runtime.current.config)


def _box(services: Services) -> SecretBox:
    box = SecretBox(services.runtime.current.config.store.secret_keys)
    if not box.can_seal:
        raise BadRequest("store.secret_keys is not set: a secret cannot be stored without it")
    return box


def _refused(err: ConfigError) -> BadRequest:
    return BadRequest("; ".join(err.problems))


async def set_enabled(services: Services, app_id: str, enabled: bool) -> None:
    try:
        await managed.update_connection(
            services.store, _catalog(services), app_id, {"enabled": enabled}, interface="console"
        )
    except ConfigError as err:
        raise _refused(err) from err
    services.store_connections.forget(
        app_id
    )  # this process at once; other replicas within cache_ttl


async def set_drop_fields(services: Services, app_id: str, entries: list[str]) -> None:
    """A store connection's sharing policy (docs/configuration.md "Sharing policy")."""
    try:
        await managed.update_connection(
            services.store,
            _catalog(services),
            app_id,
            {"drop_fields": entries},
            interface="console",
        )
    except ConfigError as err:
        raise _refused(err) from err
    services.store_connections.forget(app_id)


async def renew(services: Services, app_id: str, *, key: str, secret: str, expires: str) -> None:
    """New key and secret; ``expires`` empty keeps the current expiry."""
    extra: dict[str, Any] = {}
    if expires.strip():
        try:
            extra["expires"] = date.fromisoformat(expires.strip())
        except ValueError as exc:
            raise BadRequest(f'expires: "{expires.strip()}" is not a date (YYYY-MM-DD)') from exc
    try:
        await managed.renew_connection(
            services.store,
            _catalog(services),
            _box(services),
            app_id,
            key.strip() or None,
            secret.strip() or None,
            interface="console",
            **extra,
        )
    except ConfigError as err:
        raise _refused(err) from err
    services.store_connections.forget(app_id)


async def save_intake(
    services: Services, invite: InviteRecord, district: DistrictConfig, conn: ConnectionConfig
) -> None:
    """The district and connection an intake link made, written in the one store step that
    spends the link (``IntakeStore.save_intake``): new ones, or new details for the ones this
    very appId had. Refused, with nothing written, when another connection uses the district
    (THREAT_MODEL.md "The intake link"); audited as ``connection.intake``."""
    store, catalog, box = services.store, _catalog(services), _box(services)
    table: dict[str, Any] = {
        "base_url": district.base_url,
        "auth": district.auth,
        "vendor_authorization": district.vendor_authorization,
        "versions": [_VERSIONS[v] for v in district.versions],
    }
    if district.token_url:
        table["token_url"] = district.token_url
    if district.name in catalog.districts or conn.app_id in catalog.connections:
        raise Conflict(f"{conn.app_id} is defined in the config file; ask the vendor")
    try:
        d_cfg = managed.check_district(district.name, table)
        c_cfg = managed.validated_connection(
            conn.app_id,
            {
                "vendor": conn.vendor,
                "district": district.name,
                "key": conn.key,
                "secret": conn.secret,
                "scopes": sorted(conn.scopes),
            },
            catalog.vendors,
            True,
        )
    except ConfigError as err:
        raise _refused(err) from err
    now = now_utc()
    old = await store.get_connection(conn.app_id)
    district_record = managed.district_record(district.name, d_cfg, table)
    record = ConnectionRecord(
        app_id=conn.app_id,
        vendor=c_cfg.vendor,
        district=district.name,
        key=c_cfg.key,
        # SECURITY: sealed for where it is sent: the district as this very step saves it.
        secret=box.seal(Binding.of(conn.app_id, c_cfg.key, district_record), c_cfg.secret),
        scopes=tuple(sorted(c_cfg.scopes)),
        enabled=True,
        expires=old.expires if old is not None else None,
        created=old.created if old is not None else now,
        updated=now,
    )
    event = AuditEvent(
        at=now,
        action="connection.intake",
        interface="intake",
        vendor=invite.vendor,
        detail={"app_id": conn.app_id, "district": district.name},
    )
    # SECURITY: checked and written in one store step, with its audit event: a link spent
    # while another connection took the district, or after its appId changed hands, writes
    # nothing (409).
    await store.save_intake(IntakeSave(invite.token_hash, now, district_record, record, event))
    # Serving at once, here; elsewhere within cache_ttl.
    services.store_connections.forget(conn.app_id)
