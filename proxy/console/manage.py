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
from proxy.store.base import AuditEvent, InviteRecord
from proxy.store.crypto import SecretBox
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
    """The district and connection an intake link made: new ones (audited as
    ``connection.intake``), or new details for the ones this very appId had."""
    store, catalog, box = services.store, _catalog(services), _box(services)
    table: dict[str, Any] = {
        "base_url": district.base_url,
        "auth": district.auth,
        "vendor_authorization": district.vendor_authorization,
        "versions": [_VERSIONS[v] for v in district.versions],
    }
    if district.token_url:
        table["token_url"] = district.token_url
    old = await store.get_connection(conn.app_id)
    if old is not None and (old.vendor != invite.vendor or old.district != invite.district_name):
        # SECURITY: the invite's own appId, vendor and district, or nothing.
        raise Conflict(f"{conn.app_id} changed since the link was made; ask for a new link")
    try:
        if await store.get_district(district.name) is None:
            await managed.add_district(store, catalog, district.name, table, interface="intake")
        else:
            await managed.update_district(store, catalog, district.name, table, interface="intake")
        if old is None:
            await managed.add_connection(
                store,
                catalog,
                box,
                conn.app_id,
                {
                    "vendor": conn.vendor,
                    "district": district.name,
                    "key": conn.key,
                    "secret": conn.secret,
                    "scopes": sorted(conn.scopes),
                },
                interface="intake",
                action="connection.intake",
            )
        else:
            await managed.renew_connection(
                store, catalog, box, conn.app_id, conn.key, conn.secret, interface="intake"
            )
            await managed.update_connection(
                store,
                catalog,
                conn.app_id,
                {"scopes": sorted(conn.scopes), "enabled": True},
                interface="intake",
            )
            await store.add_audit(
                AuditEvent(
                    at=now_utc(),
                    action="connection.intake",
                    interface="intake",
                    vendor=invite.vendor,
                    detail={"app_id": conn.app_id, "district": district.name},
                )
            )
    except ConfigError as err:
        raise _refused(err) from err
    services.store_connections.forget(
        conn.app_id
    )  # serving at once, here; elsewhere within cache_ttl
