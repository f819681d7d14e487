"""A walk that cannot see the whole collection changes nothing (docs/http-api.md "Change
feed"): a district that repeats a sourcedId across pages, sends an empty page before its
count says the end, changes ``X-Total-Count`` mid-walk, answers an error, or sends something
that is not a OneRoster list. A small district of our own serves exactly those pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.changes.test_feed import feed_config, schedule_by_hand, walk
from tests.support import serve_on_loopback

__all__ = ["schedule_by_hand"]


def user(n: int) -> dict[str, Any]:
    return {"sourcedId": f"u{n}", "status": "active", "givenName": f"Given{n}"}


# Per case: the users pages the district sends (a list of (records, X-Total-Count)).
CASES: dict[str, tuple[list[Any], str]] = {
    "a sourcedId on two pages": ([([user(1), user(2)], 4), ([user(2), user(3)], 4)], "came twice"),
    "an empty page before the end": ([([user(1), user(2)], 5), ([], 5)], "an empty page"),
    "X-Total-Count changing": ([([user(1), user(2)], 4), ([user(3), user(4)], 5)], "changed"),
    "an error": ([([user(1), user(2)], 4), (500, 4)], "answered 500"),
    "not a OneRoster list": ([([user(1), user(2)], 4), ({"users": "x"}, 4)], "not a list"),
    "a record without a sourcedId": ([([user(1), {"givenName": "X"}], 2)], "without a sourcedId"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_an_incomplete_walk_changes_nothing(
    case: str, start_proxy: Any, tmp_path: Path
) -> None:
    good = [([user(1), user(2)], 4), ([user(3), user(4)], 4)]
    served = {"users": good}

    async def collection(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        offset = int(request.query.get("offset", "0"))
        answers = served.get(name, [([], 0)])
        body, total = answers[min(offset // 2, len(answers) - 1)]
        if isinstance(body, int):
            return web.json_response({}, status=body)
        payload = body if isinstance(body, dict) else {name: body}
        return web.json_response(payload, headers={"X-Total-Count": str(total)})

    app = web.Application()
    app.router.add_get("/ims/oneroster/rostering/v1p2/{name}", collection)
    runner, port = await serve_on_loopback(app)
    try:
        district = type("District", (), {"base_url": f"http://127.0.0.1:{port}", "key": "k",
                                         "secret": "s"})()  # fmt: skip
        doc = feed_config(tmp_path, district)
        doc["connections"]["app-7"]["scopes"] = ["roster-core.readonly"]
        proxy = await start_proxy(district, doc)
        first = await walk(proxy)
        assert first.state == "published" and first.counts["users"]["created"] == 4
        store = proxy.services.store
        ids = ["u1", "u2", "u3", "u4"]
        hashes = await store.known_hashes("app-7", "users", ids)
        pages, why = CASES[case]
        served["users"] = pages
        failed = await walk(proxy)
        assert failed.state == "failed" and why in (failed.error or ""), failed.error
        assert len(await store.read_changes("app-7", 0, 100)) == 4
        assert await store.known_hashes("app-7", "users", ids) == hashes
        assert await store.known_count("app-7", "users") == 4
    finally:
        await runner.cleanup()
