"""What the console and the intake page write to store connections: enable, disable, renew
credentials, and the district and connection an intake link saves (SPEC.md "Connections in the
store": only ``store`` connections change at run time; secrets are sealed with ``[store]
secret_keys`` before they reach the store)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from ..config import ConnectionConfig, DistrictConfig
from ..context import Services
from ..errors import BadRequest, Conflict, NotFound
from ..store.base import AuditEvent, ConnectionRecord, DistrictRecord, InviteRecord
from ..store.crypto import SecretBox, SecretKeyError
from ..tokens import now_utc


def box(services: Services) -> SecretBox:
    keys = services.runtime.current.config.store.secret_keys
    box = SecretBox(keys)
    if not box.can_seal:
        raise BadRequest(
            "store.secret_keys is not set: a district secret cannot be stored without it"
        )
    return box


async def _record(services: Services, app_id: str) -> ConnectionRecord:
    if app_id in services.runtime.current.config.connections:
        raise Conflict(f"{app_id} is defined in the config file; change it there and reload")
    record = await services.store.get_connection(app_id)
    if record is None:
        raise NotFound(f"there is no store connection {app_id}")
    return record


async def _audit(services: Services, action: str, record: ConnectionRecord, **detail: str) -> None:
    await services.store.add_audit(
        AuditEvent(
            at=now_utc(),
            action=action,
            interface="console",
            vendor=record.vendor,
            detail={"app_id": record.app_id, **detail},
        )
    )


async def set_enabled(services: Services, app_id: str, enabled: bool) -> None:
    record = await _record(services, app_id)
    await services.store.update_connection(replace(record, enabled=enabled, updated=now_utc()))
    services.managed.forget(app_id)  # this process at once; other replicas within cache_ttl
    await _audit(services, "connection.update", record, enabled=str(enabled).lower())


async def renew(services: Services, app_id: str, *, key: str, secret: str, expires: str) -> None:
    record = await _record(services, app_id)
    problems = []
    if not key.strip():
        problems.append("key: required")
    if not secret.strip():
        problems.append("secret: required")
    until: date | None = None
    if expires.strip():
        try:
            until = date.fromisoformat(expires.strip())
        except ValueError:
            problems.append(f'expires: "{expires.strip()}" is not a date (YYYY-MM-DD)')
    if problems:
        raise BadRequest("; ".join(problems))
    sealed = box(services).seal(app_id, secret.strip())
    await services.store.update_connection(
        replace(record, key=key.strip(), secret=sealed, expires=until, updated=now_utc())
    )
    services.managed.forget(app_id)
    await _audit(services, "connection.renew", record)


async def save_intake(
    services: Services, invite: InviteRecord, district: DistrictConfig, conn: ConnectionConfig
) -> None:
    """The district and connection an intake link made, saved as store records: new ones, or
    replacing the ones this very appId had (a district renewing through a new link)."""
    store = services.store
    try:
        sealed = box(services).seal(conn.app_id, conn.secret)
    except SecretKeyError as exc:
        raise BadRequest(str(exc)) from exc
    now = now_utc()
    new_district = DistrictRecord(
        name=district.name,
        base_url=district.base_url,
        created=now,
        updated=now,
        auth=district.auth,
        signature_method=district.signature_method,
        token_url=district.token_url,
        vendor_authorization=district.vendor_authorization,
        versions=district.versions,
    )
    new_conn = ConnectionRecord(
        app_id=conn.app_id,
        vendor=conn.vendor,
        district=district.name,
        key=conn.key,
        secret=sealed,
        scopes=tuple(sorted(conn.scopes)),
        created=now,
        updated=now,
    )
    old_conn = await store.get_connection(conn.app_id)
    if old_conn is not None and (
        old_conn.vendor != invite.vendor or old_conn.district != invite.district_name
    ):
        # SECURITY: the invite's own appId, vendor and district, or nothing.
        raise Conflict(f"{conn.app_id} changed since the link was made; ask for a new link")
    old_district = await store.get_district(district.name)
    if old_district is None:
        await store.add_district(new_district)
    else:
        await store.update_district(replace(new_district, created=old_district.created))
    if old_conn is None:
        await store.add_connection(new_conn, district_in_store=True)
    else:
        await store.update_connection(replace(new_conn, created=old_conn.created))
    services.managed.forget(conn.app_id)  # serving at once, here; elsewhere within cache_ttl
