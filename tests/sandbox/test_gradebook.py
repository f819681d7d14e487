"""Gradebook writes at the sandbox district: PUT creates (201) or replaces (200), POST creates in
bulk, DELETE removes (204), and later reads show each change."""

from __future__ import annotations

import json

import pytest

from proxy.sandbox import DISTRICT
from tests.sandbox.conftest import call
from tests.support import assert_imsx

JSON = {"Content-Type": "application/json"}


def _class_id(sbx) -> str:
    return next(iter(sbx.app[DISTRICT].views["v1p2"]["classes"]))


@pytest.mark.parametrize(
    ("path", "wrapper"),
    [
        ("/ims/oneroster/v1p1/lineItems", "lineItem"),
        ("/ims/oneroster/v1p1/results", "result"),
        ("/ims/oneroster/v1p1/categories", "category"),
        ("/ims/oneroster/gradebook/v1p2/lineItems", "lineItem"),
        ("/ims/oneroster/gradebook/v1p2/results", "result"),
        ("/ims/oneroster/gradebook/v1p2/categories", "category"),
        ("/ims/oneroster/gradebook/v1p2/scoreScales", "scoreScale"),
        ("/ims/oneroster/gradebook/v1p2/assessmentLineItems", "assessmentLineItem"),
        ("/ims/oneroster/gradebook/v1p2/assessmentResults", "assessmentResult"),
    ],
)
async def test_put_get_delete_cycle(sbx, http, path, wrapper):
    url = f"{path}/new-record-1"
    body = json.dumps({wrapper: {"title": "Quiz — ü", "status": "active"}}, ensure_ascii=False)
    assert (await call(http, sbx, url)).status == 404
    created = await call(http, sbx, url, "PUT", body=body.encode(), headers=JSON)
    assert created.status == 201, created.body
    assert created.json[wrapper]["sourcedId"] == "new-record-1"
    read = await call(http, sbx, url)
    assert read.status == 200 and read.json[wrapper]["title"] == "Quiz — ü"
    listed = await call(http, sbx, f"{path}?filter=sourcedId%3D%27new-record-1%27")
    assert len(next(iter(listed.json.values()))) == 1
    body2 = json.dumps({wrapper: {"title": "Quiz 2"}})
    replaced = await call(http, sbx, url, "PUT", body=body2.encode(), headers=JSON)
    assert replaced.status == 200
    assert (await call(http, sbx, url)).json[wrapper]["title"] == "Quiz 2"
    deleted = await call(http, sbx, url, "DELETE")
    assert deleted.status == 204 and deleted.body == b""
    gone = await call(http, sbx, url)
    assert gone.status == 404
    assert_imsx(gone.json, "unknownobject")
    assert (await call(http, sbx, url, "DELETE")).status == 404


async def test_new_line_item_shows_in_class_relations_of_both_versions(sbx, http):
    cid = _class_id(sbx)
    body = json.dumps(
        {"lineItem": {"title": "Essay", "class": {"sourcedId": cid, "type": "class"}}}
    )
    answer = await call(
        http, sbx, "/ims/oneroster/v1p1/lineItems/essay-1", "PUT", body=body.encode(), headers=JSON
    )
    assert answer.status == 201
    for path in (f"/ims/oneroster/v1p1/classes/{cid}/lineItems",
                 f"/ims/oneroster/gradebook/v1p2/classes/{cid}/lineItems"):  # fmt: skip
        items = (await call(http, sbx, path)).json["lineItems"]
        assert "essay-1" in [li["sourcedId"] for li in items], path


async def test_bulk_post_line_items_and_results(sbx, http):
    cid = _class_id(sbx)
    base = "/ims/oneroster/gradebook/v1p2"
    body = json.dumps({"lineItems": [{"sourcedId": "bulk-1", "title": "A"}, {"title": "B"}]})
    answer = await call(
        http, sbx, f"{base}/classes/{cid}/lineItems", "POST", body=body.encode(), headers=JSON
    )
    assert answer.status == 201, answer.body
    pairs = answer.json["sourcedIdPairs"]
    assert pairs[0] == {"suppliedSourcedId": "bulk-1", "allocatedSourcedId": "bulk-1"}
    allocated = pairs[1]["allocatedSourcedId"]
    assert allocated
    items = (await call(http, sbx, f"{base}/classes/{cid}/lineItems")).json["lineItems"]
    assert {"bulk-1", allocated} <= {li["sourcedId"] for li in items}
    student = next(
        e["user"]["sourcedId"]
        for e in sbx.app[DISTRICT].views["v1p2"]["enrollments"].values()
        if e["class"]["sourcedId"] == cid and e["role"] == "student"
    )
    result = {"sourcedId": "r-1", "score": 9.5, "student": {"sourcedId": student, "type": "user"}}
    results = json.dumps({"results": [result]})
    answer = await call(
        http, sbx, f"{base}/lineItems/bulk-1/results", "POST", body=results.encode(), headers=JSON
    )
    assert answer.status == 201
    got = (await call(http, sbx, f"{base}/classes/{cid}/lineItems/bulk-1/results")).json["results"]
    assert [r["sourcedId"] for r in got] == ["r-1"]
    mine = (await call(http, sbx, f"{base}/classes/{cid}/students/{student}/results")).json[
        "results"
    ]
    assert "r-1" in [r["sourcedId"] for r in mine]
    answer = await call(
        http, sbx, f"{base}/lineItems/nope/results", "POST", body=results.encode(), headers=JSON
    )
    assert answer.status == 404


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"title": "unwrapped"}', b'{"lineItem": "x"}']
)
async def test_malformed_write_bodies_are_400(sbx, http, body):
    answer = await call(
        http, sbx, "/ims/oneroster/v1p1/lineItems/x", "PUT", body=body, headers=JSON
    )
    assert answer.status == 400
    assert_imsx(answer.json, "invaliddata")


async def test_rostering_is_read_only(sbx, http):
    answer = await call(
        http, sbx, "/ims/oneroster/rostering/v1p2/users/x", "PUT", body=b"{}", headers=JSON
    )
    assert answer.status == 405
    assert answer.headers["Allow"] == "GET"
