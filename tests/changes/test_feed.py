"""The change feed end to end (docs/http-api.md "Change feed"): a real sandbox district, a real
proxy, walks through the proxy's own signing and forwarding, and what a vendor reads at
``GET /<appId>/changes``."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.changes.diff import Walk, accept, discard
from proxy.changes.feed import encode_cursor
from proxy.changes.schedule import DailyWalks
from proxy.check.catalog import run_and_keep_check
from proxy.sandbox.state import DISTRICT
from proxy.signing.oauth2 import basic_credentials
from proxy.store.base import WalkRecord
from proxy.store.crypto import new_key
from tests.support import ACME_CLIENT_SECRET, ProxyHarness, auth, base_config, get_json

ROSTER = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments")


def feed_config(tmp_path: Path, sandbox: Any, **conn: Any) -> dict[str, Any]:
    doc = base_config(tmp_path, sandbox)
    doc["store"]["secret_keys"] = [new_key()]
    doc["connections"]["app-7"].update({"changes": True, **conn})
    doc["connections"]["app-8"].update({"changes": True})
    return doc


@pytest.fixture(autouse=True)
def schedule_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's daily loop stays idle: a test walks (or turns the schedule) itself, so no
    walk of the loop's runs beside the test's."""

    async def idle(self: DailyWalks) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(DailyWalks, "run_forever", idle)


@pytest.fixture
async def feed(sandbox: Any, start_proxy: Any, tmp_path: Path) -> ProxyHarness:
    harness: ProxyHarness = await start_proxy(sandbox, feed_config(tmp_path, sandbox))
    return harness


def users(sandbox: Any) -> dict[str, dict[str, Any]]:
    """The district's own users of both versions (a test edits them as the SIS would)."""
    views = sandbox.app[DISTRICT].views
    return {sid: views["v1p2"]["users"][sid] for sid in views["v1p2"]["users"]}


async def walk(proxy: ProxyHarness, app: str = "app-7") -> WalkRecord:
    conn = proxy.services.runtime.current.connections[app]
    return await Walk(proxy.services, conn).run()


async def read_all(
    http: aiohttp.ClientSession, proxy: ProxyHarness, token: str, query: str = "limit=1000"
) -> tuple[list[dict[str, Any]], str]:
    url: str | None = f"{proxy.url}/app-7/changes?{query}"
    changes: list[dict[str, Any]] = []
    cursor = ""
    while url is not None:
        status, body, headers = await get_json(http, url, token)
        assert status == 200, body
        changes += body["changes"]
        cursor = body["cursor"]
        link = headers.get("Link")
        url = link.partition("<")[2].partition(">")[0] if link else None
    return changes, cursor


async def walked_once(
    proxy: ProxyHarness, sandbox: Any, http: aiohttp.ClientSession
) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """A first walk read to its end by the vendor: its token, the cursor after the walk, and
    the district's own users (to edit as the SIS would)."""
    await walk(proxy)
    token = await proxy.token()
    _, cursor = await read_all(http, proxy, token)
    return token, cursor, sandbox.app[DISTRICT].views["v1p2"]["users"]


async def test_the_first_walk_publishes_every_record_as_created(
    feed: ProxyHarness, sandbox: Any, http: aiohttp.ClientSession
) -> None:
    done = await walk(feed)
    assert done.state == "published", done.error
    district = sandbox.app[DISTRICT].views["v1p2"]
    for collection in (*ROSTER, "demographics"):
        counts = done.counts[collection]
        assert counts["created"] == counts["records"] == len(district[collection]), collection
        assert counts["updated"] == counts["deleted"] == 0
    # Every request of the walk was signed and went to the district like a vendor's GET.
    walked = [r for r in sandbox.recorded if "/users" in r.raw_path]
    assert walked and all(r.header("Authorization") for r in walked)

    token = await feed.token()
    changes, _ = await read_all(http, feed, token, "limit=50")
    users_seen = {c["sourcedId"] for c in changes if c["collection"] == "users"}
    assert users_seen == set(district["users"])
    assert {c["change"] for c in changes} == {"created"}
    assert all(c["at"].endswith("Z") for c in changes)
    assert len(changes) == sum(c["records"] for c in done.counts.values())


async def test_a_second_walk_reports_updated_deleted_and_tobedeleted(
    feed: ProxyHarness, sandbox: Any, http: aiohttp.ClientSession
) -> None:
    token, cursor, records = await walked_once(feed, sandbox, http)
    ids = list(records)
    records[ids[0]]["givenName"] = "Renamed"
    del records[ids[1]]
    records[ids[2]]["status"] = "tobedeleted"
    done = await walk(feed)
    assert done.state == "published", done.error
    assert done.counts["users"] | {"records": 0} == {
        "records": 0,
        "created": 0,
        "updated": 1,
        "deleted": 2,
    }
    changes, _ = await read_all(http, feed, token, f"since={cursor}")
    assert sorted((c["sourcedId"], c["change"]) for c in changes) == sorted(
        [(ids[0], "updated"), (ids[1], "deleted"), (ids[2], "deleted")]
    )
    # A walk with nothing new publishes nothing.
    assert (await walk(feed)).totals() == {"created": 0, "updated": 0, "deleted": 0}


async def test_pages_of_the_feed_follow_link_and_never_repeat(
    feed: ProxyHarness, http: aiohttp.ClientSession
) -> None:
    await walk(feed)
    token = await feed.token()
    status, body, headers = await get_json(http, f"{feed.url}/app-7/changes?limit=7", token)
    assert status == 200 and len(body["changes"]) == 7
    assert headers["Link"].endswith('>; rel="next"') and "limit=7" in headers["Link"]
    # The page that reads the newest change has no Link, even when it is full.
    total = len((await read_all(http, feed, token))[0])
    status, body, headers = await get_json(http, f"{feed.url}/app-7/changes?limit={total}", token)
    assert len(body["changes"]) == total and "Link" not in headers
    paged, _ = await read_all(http, feed, token, "limit=7")
    whole, _ = await read_all(http, feed, token, "limit=1000")
    assert paged == whole
    assert len({(c["collection"], c["sourcedId"]) for c in whole}) == len(whole)


async def test_a_walk_that_does_not_complete_changes_nothing(
    feed: ProxyHarness, sandbox: Any, http: aiohttp.ClientSession
) -> None:
    token, cursor, _ = await walked_once(feed, sandbox, http)
    del sandbox.app[DISTRICT].views["v1p2"]["users"][next(iter(users(sandbox)))]
    # The district fails mid-walk: a 503 with a Retry-After too long to wait within a request.
    sandbox.faults.status_503_retry_after = 60
    sandbox.faults.status_503_count = 100
    failed = await walk(feed)
    assert failed.state == "failed" and "503" in (failed.error or "")
    sandbox.faults.status_503_count = 0
    after, _ = await read_all(http, feed, token, f"since={cursor}")
    assert after == []
    kept = await feed.services.store.get_walk("app-7")
    assert kept.state == "failed"


async def test_a_walk_deleting_too_much_is_held_until_accepted(
    feed: ProxyHarness, sandbox: Any, http: aiohttp.ClientSession
) -> None:
    token, cursor, records = await walked_once(feed, sandbox, http)
    gone = list(records)[: len(records) // 4]
    for sid in gone:
        del records[sid]
    held = await walk(feed)
    assert held.state == "held"
    assert f"users: {len(gone)} of" in (held.error or "")
    assert await read_all(http, feed, token, f"since={cursor}") == ([], cursor)
    listed = await _listed(feed)
    report = await run_and_keep_check(feed.services, listed)
    item = next(i for i in report.checks if i.name == "changes_held")
    assert item.status == "fail" and f"{len(gone)} deleted" in item.detail
    async with http.get(f"{feed.admin_url}/metrics", headers=_admin()) as response:
        text = await response.text()
    assert 'oneroster_proxy_changes_held{app="app-7"} 1.0' in text
    async with http.get(f"{feed.admin_url}/admin/connections/app-7", headers=_admin()) as response:
        shown = (await response.json())["last_walk"]
    assert shown["state"] == "held" and shown["counts"]["users"]["deleted"] == len(gone)

    published = await accept(feed.services.store, "app-7", "cli")
    assert published.state == "published"
    changes, _ = await read_all(http, feed, token, f"since={cursor}")
    assert sorted(c["sourcedId"] for c in changes) == sorted(gone)
    assert {c["change"] for c in changes} == {"deleted"}
    audit = await feed.services.store.list_audit()
    assert audit[-1].action == "changes.accept" and audit[-1].detail["deleted"] == len(gone)


async def test_a_discarded_walk_publishes_nothing(
    feed: ProxyHarness, sandbox: Any, http: aiohttp.ClientSession
) -> None:
    token, cursor, records = await walked_once(feed, sandbox, http)
    for sid in list(records)[: len(records) // 2]:
        del records[sid]
    assert (await walk(feed)).state == "held"
    assert (await discard(feed.services.store, "app-7", "cli")).state == "discarded"
    assert await read_all(http, feed, token, f"since={cursor}") == ([], cursor)
    with pytest.raises(Exception, match="no walk of app-7 is held"):
        await accept(feed.services.store, "app-7", "cli")


async def test_max_deletions_as_a_count(sandbox: Any, start_proxy: Any, tmp_path: Path) -> None:
    proxy = await start_proxy(sandbox, feed_config(tmp_path, sandbox, max_deletions=1))
    await walk(proxy)
    records = sandbox.app[DISTRICT].views["v1p2"]["users"]
    for sid in list(records)[:2]:
        del records[sid]
    assert (await walk(proxy)).state == "held"


async def test_the_feed_answers_only_its_vendor_and_scopes(
    feed: ProxyHarness, http: aiohttp.ClientSession
) -> None:
    await walk(feed)
    await walk(feed, "app-8")
    acme = await feed.token()
    other = await feed.token("other")
    # Another vendor's appId answers exactly like an unknown one.
    status, body, _ = await get_json(http, f"{feed.url}/app-7/changes", other)
    unknown_status, unknown, _ = await get_json(http, f"{feed.url}/app-nope/changes", other)
    assert (status, body) == (unknown_status, unknown) and status == 404
    async with http.get(f"{feed.url}/app-7/changes") as response:
        assert response.status == 401
    # app-8 shares roster-core only: no demographics change is shown to it.
    status, body, _ = await get_json(http, f"{feed.url}/app-8/changes?limit=1000", other)
    assert status == 200
    assert {c["collection"] for c in body["changes"]} == set(ROSTER)
    walked = await feed.services.store.get_walk("app-8")
    assert "demographics" not in walked.counts
    status, body, _ = await get_json(http, f"{feed.url}/app-7/changes?limit=1000", acme)
    assert "demographics" in {c["collection"] for c in body["changes"]}
    # A JWT narrowed to roster-core does not see app-7's demographics changes either.
    async with http.post(
        f"{feed.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "roster-core.readonly"},
        headers={"Authorization": basic_credentials("acme", ACME_CLIENT_SECRET)},
    ) as resp:
        jwt = (await resp.json())["access_token"]
    status, body, _ = await get_json(http, f"{feed.url}/app-7/changes?limit=1000", jwt)
    assert status == 200 and {c["collection"] for c in body["changes"]} == set(ROSTER)


async def test_bad_cursors_and_limits_are_400_and_old_cursors_410(
    feed: ProxyHarness, http: aiohttp.ClientSession
) -> None:
    await walk(feed)
    token = await feed.token()
    for query in ("since=nope", "since=", "limit=0", "limit=1001", "limit=x"):
        status, body, _ = await get_json(http, f"{feed.url}/app-7/changes?{query}", token)
        assert status == 400, query
        assert body["imsx_codeMajor"] == "failure"
    status, first, _ = await get_json(http, f"{feed.url}/app-7/changes?limit=3", token)
    old = first["cursor"]
    trimmed = await feed.services.store.trim_changes("app-7", datetime.now(UTC) + timedelta(1))
    assert trimmed > 0
    status, body, _ = await get_json(http, f"{feed.url}/app-7/changes?since={old}", token)
    assert status == 410 and "full sync" in body["imsx_description"]
    # Without since, the feed starts at the oldest kept (none now) and hands out a valid cursor.
    status, body, _ = await get_json(http, f"{feed.url}/app-7/changes", token)
    assert status == 200 and body["changes"] == []
    status, _, _ = await get_json(http, f"{feed.url}/app-7/changes?since={body['cursor']}", token)
    assert status == 200
    assert encode_cursor(5) != "5"


async def test_no_byte_of_a_students_record_is_in_the_store(
    feed: ProxyHarness, sandbox: Any
) -> None:
    await walk(feed)
    records = sandbox.app[DISTRICT].views["v1p2"]["users"]
    next(iter(records.values()))["givenName"] = "Zebedee"
    await walk(feed)
    # The proxy's own connection stays open (it flushes the access ledger when it stops): the
    # file and its -wal are read as they are, after a checkpoint from a second connection.
    path = Path(feed.config.store.url.removeprefix("sqlite://"))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert b"syn-user" not in stored  # sanity: not a synthetic district
    for record in records.values():
        assert next(iter(records)).encode() in stored  # sourcedIds are kept, on purpose
        for name in ("givenName", "familyName", "email", "username"):
            value = record.get(name)
            if isinstance(value, str) and len(value) >= 4:
                assert value.encode() not in stored, (name, value)


async def test_the_daily_schedule_walks_once_per_day_and_restarts_a_dead_walk(
    feed: ProxyHarness,
) -> None:
    store = feed.services.store
    loop = DailyWalks(feed.services)
    now = datetime(2030, 1, 2, 2, 30, tzinfo=UTC)
    first = await loop.turn(now)
    assert sorted(w.app_id for w in first) == ["app-7", "app-8"]
    assert await loop.turn(now + timedelta(hours=1)) == []
    # A process died mid-walk: its walk stays "running", and the next turn starts it again.
    kept = await store.get_walk("app-7")
    await store.save_walk(WalkRecord("app-7", "dead", "running", now))
    again = await loop.turn(now + timedelta(hours=2))
    assert [w.app_id for w in again] == ["app-7"] and again[0].state == "published"
    assert again[0].totals() == {"created": 0, "updated": 0, "deleted": 0}
    assert kept is not None
    # The next day's slot is due again.
    nxt = await loop.turn(now + timedelta(days=1))
    assert sorted(w.app_id for w in nxt) == ["app-7", "app-8"]


async def _listed(proxy: ProxyHarness) -> Any:
    from proxy.check.catalog import find_connection

    return (await find_connection(proxy.services, "app-7")).connection


def _admin() -> dict[str, str]:
    from tests.support import ADMIN_TOKEN

    return auth(ADMIN_TOKEN)


async def test_no_byte_of_a_students_record_is_in_a_redis_dump(
    sandbox: Any, start_proxy: Any, tmp_path: Path
) -> None:
    import redis

    from tests.redis_server import RedisServer, require_redis_server

    require_redis_server()
    with RedisServer() as server:
        doc = feed_config(tmp_path, sandbox)
        doc["store"]["url"] = server.url
        proxy = await start_proxy(sandbox, doc)
        records = sandbox.app[DISTRICT].views["v1p2"]["users"]
        assert (await walk(proxy)).state == "published"
        next(iter(records.values()))["familyName"] = "Zebedee"
        assert (await walk(proxy)).totals()["updated"] == 1
        with redis.Redis.from_url(server.url) as client:
            client.config_set("rdbcompression", "no")
            client.save()
            folder = client.config_get("dir")["dir"]
            name = client.config_get("dbfilename")["dbfilename"]
        dump = (Path(folder) / name).read_bytes()
    assert next(iter(records)).encode() in dump  # sourcedIds are kept, on purpose
    for record in records.values():
        for field in ("givenName", "familyName", "email", "username"):
            value = record.get(field)
            if isinstance(value, str) and len(value) >= 4:
                assert value.encode() not in dump, (field, value)


async def test_one_walk_of_a_connection_at_a_time(feed: ProxyHarness) -> None:
    from proxy.errors import Conflict

    conn = feed.services.runtime.current.connections["app-7"]
    results = await asyncio.gather(
        Walk(feed.services, conn).run(), Walk(feed.services, conn).run(), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "WalkRecord"]
    assert any(isinstance(r, Conflict) and "already running" in r.description for r in results)


async def test_a_walk_pages_through_a_large_collection(start_proxy: Any, tmp_path: Path) -> None:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    big = await start_sandbox(SandboxOptions(synthetic_users=2500))
    try:
        proxy = await start_proxy(big, feed_config(tmp_path, big))
        done = await walk(proxy)
        assert done.state == "published", done.error
        assert done.counts["users"] == {
            "records": 2500, "created": 2500, "updated": 0, "deleted": 0,
        }  # fmt: skip
        pages = [r.raw_path for r in big.recorded if "/users" in r.raw_path]
        assert [p.rpartition("offset=")[2] for p in pages] == ["0", "1000", "2000"]
        changes = await proxy.services.store.read_changes("app-7", 0, 100_000)
        ids = [c.sourced_id for c in changes if c.collection == "users"]
        assert ids == [f"syn-user-{i:09d}" for i in range(2500)]
        # A vendor reads 1,000 changes in one request, and the store is asked for no more.
        asked: list[int] = []
        store = proxy.services.store
        read = store.read_changes

        async def spy(app_id: str, after: int, limit: int) -> Any:
            asked.append(limit)
            return await read(app_id, after, limit)

        store.read_changes = spy  # type: ignore[method-assign]
        token = await proxy.token()
        async with aiohttp.ClientSession() as http:
            status, body, headers = await get_json(
                http, f"{proxy.url}/app-7/changes?limit=1000", token
            )
        assert status == 200 and len(body["changes"]) == 1000 and "Link" in headers
        assert asked == [1000]
    finally:
        await big.close()


async def test_a_walk_cut_short_leaves_nothing_and_the_next_one_publishes_it_once(
    feed: ProxyHarness, sandbox: Any
) -> None:
    # The district answers slowly, and the process walking dies mid-walk.
    sandbox.faults.delay_head = 0.2
    conn = feed.services.runtime.current.connections["app-7"]
    dying = asyncio.get_running_loop().create_task(Walk(feed.services, conn).run())
    await asyncio.sleep(0.7)
    dying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dying
    store = feed.services.store
    left = await store.get_walk("app-7")
    assert left is not None and left.state == "running"
    assert await store.read_changes("app-7", 0, 10) == []
    sandbox.faults.delay_head = 0
    again = await DailyWalks(feed.services).turn(datetime.now(UTC))
    assert {w.app_id: w.state for w in again} == {"app-7": "published", "app-8": "published"}
    changes = await store.read_changes("app-7", 0, 10_000)
    assert len(changes) == len({(c.collection, c.sourced_id) for c in changes})
    assert len(changes) == sum(c["records"] for c in again[0].counts.values())


async def test_a_disabled_connection_is_not_walked(
    sandbox: Any, start_proxy: Any, tmp_path: Path
) -> None:
    proxy = await start_proxy(sandbox, feed_config(tmp_path, sandbox, enabled=False))
    walked = await DailyWalks(proxy.services).turn(datetime.now(UTC))
    assert [w.app_id for w in walked] == ["app-8"]


async def test_the_admin_api_takes_the_change_feed_keys(
    feed: ProxyHarness, sandbox: Any, http: aiohttp.ClientSession
) -> None:
    body = {
        "app_id": "app-20", "vendor": "acme", "district": "springfield", "key": sandbox.key,
        "secret": sandbox.secret, "scopes": ["roster-core.readonly"], "changes": True,
        "max_deletions": "five",
    }  # fmt: skip
    url = f"{feed.admin_url}/admin/connections"
    async with http.post(url, json=body, headers=_admin()) as response:
        refused = await response.json()
        assert response.status == 400
    assert any(e.startswith("max_deletions: invalid") for e in refused["errors"]), refused
    assert await feed.services.store.get_connection("app-20") is None
    async with http.post(url, json={**body, "max_deletions": "3%"}, headers=_admin()) as response:
        added = await response.json()
        assert response.status == 201, added
    assert (added["changes"], added["changes_at"], added["max_deletions"]) == (True, "02:00", "3%")
    conn = await feed.services.store_connections.get("app-20", feed.services.runtime.current)
    assert conn is not None and conn.config.changes
    assert (await Walk(feed.services, conn).run()).state == "published"
    async with http.patch(f"{url}/app-20", json={"changes": False}, headers=_admin()) as response:
        assert response.status == 200 and (await response.json())["changes"] is False


async def test_a_walk_waits_for_the_districts_slot_a_vendor_holds(
    sandbox: Any, start_proxy: Any, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    doc = feed_config(tmp_path, sandbox)
    doc["districts"]["springfield"].update(max_connections=1, max_wait="1s")
    proxy = await start_proxy(sandbox, doc)
    token = await proxy.token()
    # A vendor's request holds the one slot until the district times out (upstream_timeout).
    sandbox.faults.hang_paths = ["v1p1/orgs"]
    vendor = asyncio.get_running_loop().create_task(
        get_json(http, proxy.app_url("v1p1/orgs"), token)
    )
    await asyncio.sleep(0.5)
    done = await walk(proxy)
    status, _, _ = await vendor
    assert status == 504  # the vendor's request ended first; the walk waited, then went on
    assert done.state == "published", done.error
    assert done.counts["users"]["created"] > 0


async def test_a_new_first_secret_key_reports_nothing_while_the_old_one_is_listed(
    sandbox: Any, start_proxy: Any, tmp_path: Path
) -> None:
    doc = feed_config(tmp_path, sandbox)
    old, new = doc["store"]["secret_keys"][0], new_key()
    first = await walk(await start_proxy(sandbox, doc))
    records = sum(c["records"] for c in first.counts.values())
    # Rotation: the new key first, the old one still listed.
    doc["store"]["secret_keys"] = [new, old]
    rotated = await start_proxy(sandbox, doc)
    assert (await walk(rotated)).totals() == {"created": 0, "updated": 0, "deleted": 0}
    # The hashes are the new key's now: dropping the old key changes nothing either.
    doc["store"]["secret_keys"] = [new]
    assert (await walk(await start_proxy(sandbox, doc))).totals()["updated"] == 0
    # A key the last walk's hashes were not made with (nor listed): every record once.
    doc["store"]["secret_keys"] = [new_key()]
    assert (await walk(await start_proxy(sandbox, doc))).totals()["updated"] == records
