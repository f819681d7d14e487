"""The audit role of the store (``AuditStore``), run unchanged on every backend."""

from __future__ import annotations

from datetime import UTC

from proxy.store import AuditEvent, Store
from tests.store.conftest import SECOND, T0

# -- audit --------------------------------------------------------------------------------------


async def test_audit_is_listed_newest_last_with_a_limit(store: Store) -> None:
    events = [
        AuditEvent(
            at=T0,
            action="token.issue",
            interface="cli",
            vendor="acme",
            token_id="a00000000001",
            detail={"ttl_seconds": None},
        ),
        AuditEvent(
            at=T0 + SECOND,
            action="token.rotate",
            interface="admin",
            vendor="acme",
            token_id="b00000000002",
            detail={"grace_seconds": 3600.0, "ending": ["a00000000001"]},
        ),
        AuditEvent(
            at=T0 + 2 * SECOND,
            action="config.reload",
            interface="signal",
            detail={"ok": True, "nested": {"n": 1, "s": "é"}},
        ),
        AuditEvent(
            at=T0 + 3 * SECOND,
            action="token.revoke_all",
            interface="admin",
            vendor="acme",
            detail={"token_ids": []},
        ),
    ]
    for event in events:
        await store.add_audit(event)

    assert await store.list_audit() == events
    assert await store.list_audit(limit=2) == events[2:]
    assert await store.list_audit(limit=0) == []
    listed = await store.list_audit(limit=1)
    assert listed[0].at.tzinfo is UTC and listed[0].at == T0 + 3 * SECOND
