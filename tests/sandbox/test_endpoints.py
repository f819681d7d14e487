"""Every endpoint of the sandbox district answers, and the sample data holds together."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from yarl import URL

from proxy.sandbox import DISTRICT
from proxy.sandbox.endpoints import API_ROOTS, COLLECTIONS, ID
from proxy.sandbox.render import HrefAbsolutizer
from tests.sandbox.conftest import call, sign
from tests.support import assert_imsx


def _ids(sbx: Any, version: str) -> dict[str, str]:
    """Ids that fit together: a class, its school, course, term, a line item, enrolled people."""
    views = sbx.app[DISTRICT].views[version]
    klass = next(iter(views["classes"].values()))
    cid = klass["sourcedId"]
    enrolled = [e for e in views["enrollments"].values() if e["class"]["sourcedId"] == cid]
    student = next(e["user"]["sourcedId"] for e in enrolled if e["role"] == "student")
    teacher = next(e["user"]["sourcedId"] for e in enrolled if e["role"] == "teacher")
    line_item = next(li for li in views["lineItems"].values() if li["class"]["sourcedId"] == cid)
    sessions = views["academicSessions"].values()
    ids = {
        "classes": cid,
        "schools": klass["school"]["sourcedId"],
        "orgs": klass["school"]["sourcedId"],
        "courses": klass["course"]["sourcedId"],
        "terms": klass["terms"][0]["sourcedId"],
        "academicSessions": klass["terms"][0]["sourcedId"],
        "gradingPeriods": next(s["sourcedId"] for s in sessions if s["type"] == "gradingPeriod"),
        "students": student,
        "teachers": teacher,
        "users": student,
        "demographics": student,
        "lineItems": line_item["sourcedId"],
    }
    for name in ("enrollments", "categories", "results", "scoreScales", "assessmentLineItems",
                 "assessmentResults", "resources"):  # fmt: skip
        if name in views:
            ids[name] = next(iter(views[name]))
    ids["lineItemCategories"] = ids["categories"]
    return ids


def _get_endpoints() -> list[tuple[tuple[str, ...], str, tuple[str, ...], str]]:
    out = []
    for root, (version, endpoints) in API_ROOTS.items():
        for endpoint in endpoints:
            if endpoint.action("GET"):
                out.append((root, version, endpoint.pattern, endpoint.result))
    return out


@pytest.mark.parametrize(
    ("root", "version", "pattern", "result"),
    _get_endpoints(),
    ids=["/".join(r) + "/" + "/".join(p) for r, _, p, _ in _get_endpoints()],
)
async def test_every_get_endpoint_answers(sbx, http, root, version, pattern, result):
    ids = _ids(sbx, version)
    segments = []
    for position, segment in enumerate(pattern):
        segments.append(ids[pattern[position - 1]] if segment == ID else segment)
    path = "/ims/oneroster/" + "/".join(root) + "/" + "/".join(segments)
    answer = await call(http, sbx, path)
    assert answer.status == 200, (path, answer.body)
    _, plural, singular = COLLECTIONS[result]
    if len(pattern) == 2 and pattern[1] == ID:
        assert answer.json[singular]["sourcedId"] == segments[1]
    else:
        assert isinstance(answer.json[plural], list)
        assert (
            int(answer.headers["X-Total-Count"]) == len(answer.json[plural])
            or len(answer.json[plural]) == 100
        )
        assert 'rel="first"' in answer.headers["Link"]


async def test_counts_fit_a_district(sbx, http):
    async def total(path: str) -> int:
        answer = await call(http, sbx, path + "?limit=1")
        assert answer.status == 200
        return int(answer.headers["X-Total-Count"])

    assert await total("/ims/oneroster/v1p1/schools") == 3
    assert await total("/ims/oneroster/v1p1/orgs") == 4
    assert await total("/ims/oneroster/v1p1/terms") == 2
    assert await total("/ims/oneroster/v1p1/gradingPeriods") == 4
    assert await total("/ims/oneroster/v1p1/academicSessions") == 7
    assert await total("/ims/oneroster/v1p1/users") > 100  # more than one default page
    assert await total("/ims/oneroster/rostering/v1p2/students") == 120


async def test_unknown_ids_are_404_imsx(sbx, http):
    for path in (
        "/ims/oneroster/v1p1/users/nope",
        "/ims/oneroster/rostering/v1p2/classes/nope/students",
        "/ims/oneroster/gradebook/v1p2/lineItems/nope",
        "/ims/oneroster/resources/v1p2/resources/nope",
    ):
        answer = await call(http, sbx, path)
        assert answer.status == 404, path
        assert_imsx(answer.json, "unknownobject")


async def test_a_teacher_is_not_a_student(sbx, http):
    teacher = _ids(sbx, "v1p1")["teachers"]
    answer = await call(http, sbx, f"/ims/oneroster/v1p1/students/{teacher}")
    assert answer.status == 404
    answer = await call(http, sbx, f"/ims/oneroster/v1p1/teachers/{teacher}")
    assert answer.status == 200 and answer.json["user"]["role"] == "teacher"


async def test_unknown_endpoint_and_wrong_method(sbx, http):
    for path in ("/ims/oneroster/v1p1/widgets", "/ims/oneroster/v1p3/users", "/elsewhere",
                 "/ims/oneroster/rostering/v1p2/users%0A"):  # fmt: skip
        answer = await call(http, sbx, path)
        assert answer.status == 404, path
        assert_imsx(answer.json)
    answer = await call(http, sbx, "/ims/oneroster/v1p1/users", "DELETE")
    assert answer.status == 405
    assert answer.headers["Allow"] == "GET"
    assert_imsx(answer.json)


async def test_version_shapes(sbx, http):
    v11 = (await call(http, sbx, "/ims/oneroster/v1p1/students?limit=1")).json["users"][0]
    v12 = (await call(http, sbx, "/ims/oneroster/rostering/v1p2/students?limit=1")).json["users"][0]
    assert v11["role"] == "student" and "roles" not in v11
    assert v11["enabledUser"] == "true"
    assert v12["roles"][0]["role"] == "student" and "role" not in v12
    assert v12["enabledUser"] == "true"  # 1.2 OpenAPI: "type": "string", enum true/false
    assert v12["primaryOrg"]["type"] == "org"
    for user in (v11, v12):
        for key in ("sourcedId", "status", "dateLastModified", "givenName", "familyName",
                    "username", "identifier", "email", "grades", "agents"):  # fmt: skip
            assert key in user
    one = (await call(http, sbx, f"/ims/oneroster/v1p1/users/{v11['sourcedId']}")).json
    assert list(one) == ["user"]


async def test_every_reference_resolves(sbx):
    views = sbx.app[DISTRICT].views
    for version, stores in views.items():
        for store, records in stores.items():
            for record in records.values():
                for ref in _refs(record):
                    target = {"org": "orgs", "academicSession": "academicSessions",
                              "course": "courses", "class": "classes", "user": "users",
                              "category": "categories", "lineItem": "lineItems",
                              "scoreScale": "scoreScales", "resource": "resources",
                              "assessmentLineItem": "assessmentLineItems"}[ref["type"]]  # fmt: skip
                    assert ref["sourcedId"] in stores[target], (version, store, ref)
                    assert ref["href"].endswith(f"/{target}/{ref['sourcedId']}")


def _refs(value: Any) -> list[dict[str, str]]:
    if isinstance(value, dict):
        if set(value) == {"href", "sourcedId", "type"}:
            return [value]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


async def test_people_are_well_formed(sbx):
    users = list(sbx.app[DISTRICT].views["v1p1"]["users"].values())
    emails = [u["email"] for u in users]
    assert len(emails) == len(set(emails)), "emails must be unique"
    names = {u["givenName"] for u in users} | {u["familyName"] for u in users}
    assert {"Zoë", "José", "O'Brien"} <= names
    roles = {u["role"] for u in users}
    assert {"student", "teacher", "parent", "guardian", "administrator"} <= roles
    by_id = {u["sourcedId"]: u for u in users}
    for user in users:
        for agent in user["agents"]:
            assert user["sourcedId"] in [
                a["sourcedId"] for a in by_id[agent["sourcedId"]]["agents"]
            ]


async def test_sessions_link_parents_and_children(sbx, http):
    terms = (await call(http, sbx, "/ims/oneroster/v1p1/terms")).json["academicSessions"]
    for term in terms:
        periods = (
            await call(http, sbx, f"/ims/oneroster/v1p1/terms/{term['sourcedId']}/gradingPeriods")
        ).json["academicSessions"]
        assert len(periods) == 2
        assert {p["sourcedId"] for p in periods} == {c["sourcedId"] for c in term["children"]}
        assert all(p["parent"]["sourcedId"] == term["sourcedId"] for p in periods)


async def test_class_rosters_are_the_enrollments(sbx, http):
    classes = (await call(http, sbx, "/ims/oneroster/v1p1/classes?limit=3")).json["classes"]
    for klass in classes:
        cid = klass["sourcedId"]
        enrollments = (
            await call(
                http, sbx, f"/ims/oneroster/v1p1/enrollments?filter=class.sourcedId%3D%27{cid}%27"
            )
        ).json["enrollments"]
        students = (await call(http, sbx, f"/ims/oneroster/v1p1/classes/{cid}/students")).json[
            "users"
        ]
        teachers = (await call(http, sbx, f"/ims/oneroster/v1p1/classes/{cid}/teachers")).json[
            "users"
        ]
        assert {s["sourcedId"] for s in students} == {
            e["user"]["sourcedId"] for e in enrollments if e["role"] == "student"
        }
        assert {t["sourcedId"] for t in teachers} == {
            e["user"]["sourcedId"] for e in enrollments if e["role"] == "teacher"
        }
        assert students and teachers
        school = klass["school"]["sourcedId"]
        nested = (
            await call(http, sbx, f"/ims/oneroster/v1p1/schools/{school}/classes/{cid}/students")
        ).json["users"]
        assert nested == students
        for student in students[:3]:
            mine = (
                await call(
                    http, sbx, f"/ims/oneroster/v1p1/students/{student['sourcedId']}/classes"
                )
            ).json["classes"]
            assert cid in {c["sourcedId"] for c in mine}


async def test_school_relations_stay_in_the_school(sbx, http):
    schools = (await call(http, sbx, "/ims/oneroster/rostering/v1p2/schools")).json["orgs"]
    seen_classes = 0
    for school in schools:
        sid = school["sourcedId"]
        base = f"/ims/oneroster/rostering/v1p2/schools/{sid}"
        classes = (await call(http, sbx, base + "/classes")).json["classes"]
        assert classes and all(c["school"]["sourcedId"] == sid for c in classes)
        seen_classes += len(classes)
        students = (await call(http, sbx, base + "/students?limit=1000")).json["users"]
        assert all(s["primaryOrg"]["sourcedId"] == sid for s in students)
        courses = (await call(http, sbx, base + "/courses")).json["courses"]
        assert all(c["org"]["sourcedId"] == sid for c in courses)
    total = (await call(http, sbx, "/ims/oneroster/rostering/v1p2/classes?limit=1")).headers[
        "X-Total-Count"
    ]
    assert seen_classes == int(total)
    # A class of another school is not found under this school.
    other_class = classes[0]["sourcedId"]
    answer = await call(
        http,
        sbx,
        f"/ims/oneroster/rostering/v1p2/schools/{schools[0]['sourcedId']}/classes/{other_class}/students",
    )
    assert answer.status == 404


async def test_gradebook_relations(sbx, http):
    ids = _ids(sbx, "v1p2")
    cid, lid, student = ids["classes"], ids["lineItems"], ids["students"]
    base = "/ims/oneroster/gradebook/v1p2"
    line_items = (await call(http, sbx, f"{base}/classes/{cid}/lineItems")).json["lineItems"]
    assert line_items and all(li["class"]["sourcedId"] == cid for li in line_items)
    results = (await call(http, sbx, f"{base}/classes/{cid}/lineItems/{lid}/results")).json[
        "results"
    ]
    assert len(results) == 15 and all(r["lineItem"]["sourcedId"] == lid for r in results)
    mine = (await call(http, sbx, f"{base}/classes/{cid}/students/{student}/results")).json[
        "results"
    ]
    assert len(mine) == len(line_items) and all(r["student"]["sourcedId"] == student for r in mine)
    scales = (await call(http, sbx, f"{base}/classes/{cid}/scoreScales")).json["scoreScales"]
    assert len(scales) == 1
    categories = (await call(http, sbx, f"{base}/classes/{cid}/categories")).json["categories"]
    assert {c["sourcedId"] for c in categories} == {
        li["category"]["sourcedId"] for li in line_items
    }


async def test_v1p2_booleans_are_strings_like_v1p1(sbx, http):
    root = "/ims/oneroster/rostering/v1p2"
    flags = {"primary", "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
             "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
             "hispanicOrLatinoEthnicity", "enabledUser"}  # fmt: skip
    seen: dict[str, set[Any]] = {}
    for name in ("users", "enrollments", "demographics"):
        answer = await call(http, sbx, f"{root}/{name}?limit=1000")
        for record in answer.json[name]:
            for key in flags & set(record):
                seen.setdefault(key, set()).add(record[key])
    assert set(seen) == flags
    assert all(values <= {"true", "false"} for values in seen.values()), seen
    # Both values occur, so the conversion (not a constant) is what these records went through.
    assert seen["primary"] == seen["asian"] == {"true", "false"}


@pytest.mark.parametrize("base_path", ["", "/campus/api/oneroster/v1p2/springfield"])
async def test_hrefs_are_absolute_uris(make_sandbox, http, base_path):
    sbx = await make_sandbox(base_path=base_path)
    origin = sbx.base_url[: len(sbx.base_url) - len(base_path)]
    assert origin.startswith("http://127.0.0.1:")
    prefix = f"{origin}{base_path}/ims/oneroster/"
    for path, version in (("v1p1", "v1p1"), ("rostering/v1p2", "v1p2")):
        listed = (await call(http, sbx, f"/ims/oneroster/{path}/classes?limit=3")).json["classes"]
        one = await call(http, sbx, f"/ims/oneroster/{path}/classes/{listed[0]['sourcedId']}")
        refs = [r for record in [*listed, one.json["class"]] for r in _refs(record)]
        assert len(refs) >= 12
        for ref in refs:
            assert ref["href"].startswith(prefix), ref
            # The href names the record itself: following it answers that record.
            followed = await call(http, sbx, ref["href"][len(sbx.base_url) :])
            assert followed.status == 200, ref
            assert next(iter(followed.json.values()))["sourcedId"] == ref["sourcedId"]
        # The stored records keep the path form: the origin is the request's, not cached.
        stored = sbx.app[DISTRICT].views[version]["classes"][listed[0]["sourcedId"]]
        assert stored["school"]["href"].startswith(f"{base_path}/ims/oneroster/")


async def test_hrefs_name_the_host_the_client_reached(sbx, http):
    # Signed for "localhost": the verifier and the hrefs both take the request's Host.
    url = sbx.base_url.replace("127.0.0.1", "localhost") + "/ims/oneroster/v1p1/schools?limit=1"
    url, headers, _ = sign(sbx, "GET", url)
    async with http.get(URL(url.replace("localhost", "127.0.0.1"), encoded=True),
                        headers={**headers, "Host": urlsplit(url).netloc}) as resp:  # fmt: skip
        assert resp.status == 200
        school = (await resp.json())["orgs"][0]
    assert school["parent"]["href"].startswith(f"http://{urlsplit(url).netloc}/ims/oneroster/")


async def test_written_and_synthetic_records_get_absolute_hrefs(make_sandbox, http):
    sbx = await make_sandbox(synthetic_users=300)
    users = (await call(http, sbx, "/ims/oneroster/v1p1/users?limit=300")).json["users"]
    assert len(users) == 300
    for user in users:
        assert user["enabledUser"] == "true"
        assert user["orgs"][0]["href"].startswith(sbx.base_url + "/ims/oneroster/v1p1/orgs/")
    v12 = (await call(http, sbx, "/ims/oneroster/rostering/v1p2/users/syn-user-000000007")).json
    assert v12["user"]["enabledUser"] == "true"
    assert v12["user"]["primaryOrg"]["href"].startswith(
        sbx.base_url + "/ims/oneroster/rostering/v1p2/orgs/"
    )
    klass = next(iter(sbx.app[DISTRICT].views["v1p2"]["classes"]))
    body = json.dumps({"lineItems": [{"sourcedId": "li-href", "title": "Quiz"}]}).encode()
    path = f"/ims/oneroster/gradebook/v1p2/classes/{klass}/lineItems"
    headers = {"Content-Type": "application/json"}
    posted = await call(http, sbx, path, "POST", body=body, headers=headers)
    assert posted.status == 201
    answer = await call(http, sbx, "/ims/oneroster/gradebook/v1p2/lineItems/li-href")
    assert answer.json["lineItem"]["class"]["href"] == (
        f"{sbx.base_url}/ims/oneroster/rostering/v1p2/classes/{klass}"
    )


def test_href_rewrite_touches_only_guidref_keys_and_escapes_the_host():
    hrefs = HrefAbsolutizer("/base")
    payload = {
        "a": {"href": "/base/ims/oneroster/v1p1/orgs/1", "sourcedId": "1", "type": "org"},
        "note": '"href":"/base/ims/oneroster/v1p1/orgs/2"',  # text that only looks like a key
        "other": {"href": "/elsewhere/ims/oneroster/v1p1/orgs/3"},
    }
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    out = json.loads(hrefs.apply(raw, hrefs.replacement("https://district.example")))
    assert out["a"]["href"] == "https://district.example/base/ims/oneroster/v1p1/orgs/1"
    assert out["note"] == payload["note"] and out["other"] == payload["other"]
    # SECURITY: a Host header with a quote cannot end the string and add JSON of its own.
    hostile = json.loads(hrefs.apply(raw, hrefs.replacement('http://x","evil":"1')))
    assert set(hostile["a"]) == {"href", "sourcedId", "type"}
    assert hostile["a"]["href"] == 'http://x","evil":"1/base/ims/oneroster/v1p1/orgs/1'
