"""The store conformance suite, continued: background check results and district intake links
(docs/checklist.md, docs/http-api.md), run unchanged on sqlite and on redis-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from proxy.store import CheckResult, InviteRecord, Store
from proxy.store.base import CHECK_HISTORY
from tests.store.conftest import Backend

T0 = datetime(2026, 3, 1, 12, 0, 0, 250001, tzinfo=UTC)
# Invites live in real time: Redis drops an invite's key a day after it expires.
NOW = datetime.now(UTC).replace(microsecond=250001)


def result(app: str, n: int, ok: bool = True) -> CheckResult:
    document = {"app": app, "ok": ok, "checks": [{"name": "n", "status": "ok", "detail": str(n)}]}
    return CheckResult(app_id=app, at=T0 + timedelta(minutes=n), document=document)


def invite(token_hash: str = "h" * 64, **fields: object) -> InviteRecord:
    values: dict[str, object] = {
        "token_hash": token_hash,
        "app_id": "app-9",
        "vendor": "acme",
        "district_name": "shelbyville",
        "scopes": ("roster-core.readonly", "gradebook.readonly"),
        "created": NOW,
        "expires": NOW + timedelta(days=7),
    }
    values.update(fields)
    return InviteRecord(**values)  # type: ignore[arg-type]


async def test_check_results_newest_first_and_only_the_last_twenty_kept(store: Store) -> None:
    for n in range(CHECK_HISTORY + 5):
        await store.add_check_result(result("app-7", n, ok=n % 2 == 0))
    await store.add_check_result(result("app-8", 0))

    got = await store.list_check_results("app-7")
    assert [r.document["checks"][0]["detail"] for r in got] == [
        str(n) for n in range(CHECK_HISTORY + 4, 4, -1)
    ]
    assert got[0] == result("app-7", CHECK_HISTORY + 4, ok=True)
    assert got[0].at.tzinfo is UTC and got[0].at.microsecond == 250001
    assert [r.at for r in await store.list_check_results("app-7", limit=2)] == [
        got[0].at,
        got[1].at,
    ]
    assert await store.list_check_results("nobody") == []
    assert len(await store.list_check_results("app-8")) == 1


async def test_last_check_results_gives_the_two_newest_per_connection(store: Store) -> None:
    for n in range(3):
        await store.add_check_result(result("app-7", n, ok=n == 0))
    await store.add_check_result(result("app-8", 7))

    last = await store.last_check_results(["app-7", "app-8", "app-none"])
    assert sorted(last) == ["app-7", "app-8"]
    assert [r.at for r in last["app-7"]] == [T0 + timedelta(minutes=2), T0 + timedelta(minutes=1)]
    assert [r.ok for r in last["app-7"]] == [False, False]
    assert last["app-8"] == [result("app-8", 7)]
    assert await store.last_check_results([]) == {}


async def test_check_results_are_shared_with_another_instance(
    store: Store, backend: Backend
) -> None:
    other = backend.make()
    await other.open()
    try:
        await other.add_check_result(result("app-7", 1))
        assert await store.list_check_results("app-7") == [result("app-7", 1)]
    finally:
        await other.close()


async def test_invite_round_trip_and_duplicate_refused(store: Store) -> None:
    record = invite()
    await store.add_invite(record)
    assert await store.get_invite(record.token_hash) == record
    assert await store.get_invite("x" * 64) is None
    try:
        await store.add_invite(invite(app_id="app-other"))
    except ValueError:
        pass
    else:
        raise AssertionError("a second invite with the same token hash was accepted")
    assert (await store.get_invite(record.token_hash)) == record


async def test_an_invite_is_spent_once_and_never_after_it_expires(store: Store) -> None:
    await store.add_invite(invite("a" * 64))
    await store.add_invite(invite("b" * 64))

    # Many racing submissions (replicas, double clicks): exactly one wins.
    wins = await asyncio.gather(
        *(store.spend_invite("a" * 64, NOW + timedelta(hours=1)) for _ in range(8))
    )
    assert wins.count(True) == 1
    spent = await store.get_invite("a" * 64)
    assert spent is not None and spent.spent == NOW + timedelta(hours=1)
    assert not spent.usable_at(NOW + timedelta(hours=2))

    assert not await store.spend_invite("b" * 64, NOW + timedelta(days=7))  # expired then
    fresh = await store.get_invite("b" * 64)
    assert fresh is not None and fresh.spent is None
    assert not fresh.usable_at(NOW + timedelta(days=7))
    assert fresh.usable_at(NOW + timedelta(days=6))
    assert not await store.spend_invite("c" * 64, NOW)  # unknown
