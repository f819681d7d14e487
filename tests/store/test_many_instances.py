"""Several store instances (processes, replicas) on one backend's data see one store, for
every role; run unchanged on every backend."""

from __future__ import annotations

from proxy.store import AuditEvent, Store
from proxy.tokens import new_token
from tests.store.conftest import T0, Backend

# -- many instances on one store ----------------------------------------------------------------


async def test_two_instances_see_each_others_writes(store: Store, backend: Backend) -> None:
    other = backend.make()
    await other.open()
    try:
        issued = new_token("acme")
        await store.add_token(issued.record)
        assert await other.get_token(issued.record.id) == issued.record

        assert await other.revoke_token(issued.record.id, T0) is True
        seen = await store.get_token(issued.record.id)
        assert seen is not None and seen.revoked == T0

        await other.add_audit(AuditEvent(at=T0, action="config.reload", interface="signal"))
        assert [e.action for e in await store.list_audit()] == ["config.reload"]

        # One bucket and one semaphore, whichever instance asks.
        assert await store.take_tokens("shared", rate=1.0, burst=1) == 0.0
        assert await other.take_tokens("shared", rate=1.0, burst=1) > 0.5
        assert await store.acquire_slot("shared", 1, "first", ttl=30) is True
        assert await other.acquire_slot("shared", 1, "second", ttl=30) is False
        await other.release_slot("shared", "first")
        assert await other.acquire_slot("shared", 1, "second", ttl=30) is True
    finally:
        await other.close()
