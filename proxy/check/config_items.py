"""The checklist items judged from the config alone (docs/checklist.md), in the documented order.

Pure functions of the connection's config (and the time): no request is made, so they are
judged first and never ``skip`` for an earlier failure.
"""

from __future__ import annotations

from datetime import datetime

from proxy.check.report import HINTS, Item, fail
from proxy.config import (
    EXPIRY_WARNING,
    ConnectionConfig,
    DistrictConfig,
    VendorConfig,
    infinite_campus_vendor_key,
)
from proxy.courtesy import coming_pause, paused


def connection_enabled(cfg: ConnectionConfig) -> Item:
    """the documented first item: a disabled connection is refused (403) by the
    gateway."""
    name = "connection_enabled"
    if cfg.enabled:
        return Item(name, "ok", "enabled")
    if cfg.stored:
        # A store connection has no config key to change: name the command that enables it.
        return Item(
            name,
            "fail",
            "disabled; the gateway answers 403 to every request: enable it with "
            f"`oneroster-proxy connections update {cfg.app_id} --enable` (or the console)",
        )
    return fail(
        name,
        f"connections.{cfg.app_id}.enabled = false; the gateway answers 403 to every request",
    )


def not_expired(cfg: ConnectionConfig, now: datetime) -> Item:
    """Expired: the gateway refuses it (403); within ``EXPIRY_WARNING``: ok with a warning."""
    name = "not_expired"
    expires = cfg.expires
    if expires is None:
        return Item(name, "ok", "no expiry date set")
    if cfg.expired(now):
        return fail(name, f"expired on {expires.isoformat()}; the gateway answers 403")
    left = cfg.days_left(now)
    if left is not None and left <= EXPIRY_WARNING.days:
        return Item(
            name,
            "ok",
            f"warning: expires in {left} days ({expires.isoformat()}): {HINTS[name]}",
        )
    return Item(name, "ok", f"expires {expires.isoformat()} (in {left} days)")


def infinite_campus_key(cfg: ConnectionConfig, vendor: VendorConfig) -> Item:
    """An ``InfiniteCampus_<vendorKey>_<GUID>`` key names the vendor key it was issued for."""
    name = "infinite_campus_key"
    named = infinite_campus_vendor_key(cfg.key)
    if named is None:
        return Item(name, "skip", "not an InfiniteCampus_<vendorKey>_<GUID> key")
    if vendor.vendor_key is None:
        return Item(
            name,
            "skip",
            f"vendors.{vendor.name}.vendor_authorization is not set, "
            "so there is no vendor key to compare",
        )
    if named == vendor.vendor_key:
        return Item(
            name,
            "ok",
            f'the key names vendor key "{named}", as '
            f"vendors.{vendor.name}.vendor_authorization does",
        )
    return fail(
        name,
        f'the key names vendor key "{named}" but '
        f'vendors.{vendor.name}.vendor_authorization is for "{vendor.vendor_key}"',
    )


def not_paused(district: DistrictConfig, now: datetime) -> Item:
    """docs/configuration.md "SIS courtesy": during a pause every request answers 503; a pause
    starting within 30 days is a warning."""
    name = "not_paused"
    pause = paused(district, now)
    if pause is not None:
        return fail(
            name,
            f"district {district.name} is paused ({pause.reason}) from "
            f"{pause.start.isoformat()} to {pause.end.isoformat()} inclusive; every request "
            "answers 503",
        )
    coming = coming_pause(district, now)
    if coming is not None:
        return Item(
            name,
            "ok",
            f"warning: district {district.name} pauses ({coming.reason}) from "
            f"{coming.start.isoformat()} to {coming.end.isoformat()} inclusive",
        )
    return Item(name, "ok", "no pause in effect or within 30 days")
