"""A consumer's OneRoster conformance suite, run through the proxy against the sandbox district
(docs/sandbox.md: realistic enough that a consumer's OneRoster conformance
suite passes against it through the proxy).

Written the way a vendor tests a district before going live: discover ids by walking the API
(nothing is read from the sandbox's Python objects), then check every GET endpoint of OneRoster
1.1 (``v1p1/...``) and 1.2 (``rostering/``, ``gradebook/``, ``resources/v1p2/...``), the shape of
every entity, that references resolve and relationship endpoints agree with the collections,
paging, filters, sort, field selection, a delta sync after a gradebook write, and the imsx errors.
One sandbox and one proxy serve the whole module.

Where the required fields come from:

* OneRoster 1.2 Rostering REST binding, the official OpenAPI file (repository
  ``1EdTech/oneroster-bootcamp``, ``src/main/resources/oas/``
  ``onerosterv1p2rostersservice_openapi3_v1p0.json``):
  ``UserDType.required = sourcedId, status, dateLastModified, enabledUser, givenName, familyName,
  roles`` (``roles`` minItems 1, ``RoleDType.required = roleType, role, org``);
  ``ClassDType.required = ... title, course, school, terms`` (``terms`` minItems 1);
  ``CourseDType.required = ... title, courseCode``; ``OrgDType.required = ... name, type,
  identifier``; ``EnrollmentDType.required = ... user, class, school, role``;
  ``AcademicSessionDType.required = ... title, startDate, endDate, type, schoolYear``;
  ``DemographicsDType.required = sourcedId, status, dateLastModified``; every GUIDRef requires
  ``href`` (``format: uri``), ``sourcedId`` and ``type``; and the booleans ``enabledUser``,
  ``enrollment.primary`` and the demographics race/ethnicity flags are ``"type": "string",
  "enum": ["true", "false"]`` (the 1EdTech FAQ "What are the permitted values for properties that
  have a data-type of Boolean?" says the same for both bindings: "true" or "false").
* The same required lists for ``ClassDType`` in a C# binding generated from the 1.2 model
  (``EduKoumu.OneRosterService.DataTypes.Class.ClassDType``: ``[Required]`` on SourcedId, Status,
  DateLastModified, Title, Course, School, Terms).
* OneRoster 1.1 (Final, §4 "Data Model"; its text was not found by the searches made for this
  suite, so these lists follow the spec as its implementers know it): user ``username, enabledUser,
  givenName, familyName, role, orgs``; class ``title, classType, course, school, terms``; course
  ``title, org``; org ``name, type``; enrollment ``user, class, school, role``; academicSession
  ``title, startDate, endDate, type, schoolYear``; lineItem ``title, assignDate, dueDate, class,
  category, gradingPeriod, resultValueMin, resultValueMax``; result ``lineItem, student,
  scoreStatus, score, scoreDate``; category ``title``; resource ``vendorResourceId``. A real 1.1
  payload seen in the wild (ClassLink, ``"enabledUser":"true"``, ``"orgs":[{"href":
  "https://.../ims/oneroster/v1p1/orgs/2", ...}]``) has the same shape.
* OneRoster 1.2 Gradebook / Resources (their OpenAPI files were not found either; the lists are
  the 1.2 information model's required attributes): lineItem ``title, assignDate, dueDate,
  class, school, category``; result ``lineItem, student, scoreStatus, scoreDate``; scoreScale
  ``title, type, class, scoreScaleValue``; resource ``title, vendorResourceId``.

Known deviations of the sandbox are written as ``xfail(strict=True)`` tests, so they turn into
failures the day they are fixed and the marker is due to go.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from proxy.scopes import endpoint_templates
from tests.support import ProxyHarness, assert_imsx, auth, base_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

V1P1 = "v1p1"
V1P2 = "v1p2"
APP = "app-7"

#: Where each version keeps each service (a 1.1 district has one root for all of them).
ROSTERING = {V1P1: "v1p1", V1P2: "rostering/v1p2"}
GRADEBOOK = {V1P1: "v1p1", V1P2: "gradebook/v1p2"}
RESOURCES = {V1P1: "v1p1", V1P2: "resources/v1p2"}
PREFIX_VERSION = {
    "v1p1": V1P1,
    "rostering/v1p2": V1P2,
    "gradebook/v1p2": V1P2,
    "resources/v1p2": V1P2,
}

#: Endpoint collection name -> (wrapper of a list, wrapper of one record), as the bindings name
#: them (1.1 §4 / 1.2 "...SetDType" and "Single...DType" payloads). A consumer's own table, kept
#: apart from the sandbox's on purpose.
WRAPPERS: dict[str, tuple[str, str]] = {
    "academicSessions": ("academicSessions", "academicSession"),
    "terms": ("academicSessions", "academicSession"),
    "gradingPeriods": ("academicSessions", "academicSession"),
    "classes": ("classes", "class"),
    "courses": ("courses", "course"),
    "demographics": ("demographics", "demographics"),
    "enrollments": ("enrollments", "enrollment"),
    "orgs": ("orgs", "org"),
    "schools": ("orgs", "org"),
    "users": ("users", "user"),
    "students": ("users", "user"),
    "teachers": ("users", "user"),
    "categories": ("categories", "category"),
    "lineItemCategories": ("categories", "category"),
    "lineItems": ("lineItems", "lineItem"),
    "results": ("results", "result"),
    "scoreScales": ("scoreScales", "scoreScale"),
    "assessmentLineItems": ("assessmentLineItems", "assessmentLineItem"),
    "assessmentResults": ("assessmentResults", "assessmentResult"),
    "resources": ("resources", "resource"),
}

#: GUIDRef ``type`` -> the collection holding it, and the service that serves that collection.
REF_TARGET: dict[str, tuple[str, str]] = {
    "org": ("orgs", "rostering"),
    "academicSession": ("academicSessions", "rostering"),
    "course": ("courses", "rostering"),
    "class": ("classes", "rostering"),
    "user": ("users", "rostering"),
    "enrollment": ("enrollments", "rostering"),
    "category": ("categories", "gradebook"),
    "lineItem": ("lineItems", "gradebook"),
    "result": ("results", "gradebook"),
    "scoreScale": ("scoreScales", "gradebook"),
    "assessmentLineItem": ("assessmentLineItems", "gradebook"),
    "resource": ("resources", "resources"),
}

#: 1.2 Gradebook paths the OpenAPI file defines for POST only (postResultsForAcademicSession
#: ForClass, postResultsForLineItem): not GET endpoints, so a district answers them 405.
POST_ONLY_V1P2 = frozenset({"classes/{}/academicSessions/{}/results", "lineItems/{}/results"})

#: Every collection of each version, by the service prefix that serves it.
_ROSTER_NAMES = "orgs academicSessions courses classes enrollments users demographics".split()
_GRADEBOOK_NAMES = "categories lineItems results".split()
_GRADEBOOK_V1P2_ONLY = "scoreScales assessmentLineItems assessmentResults".split()
COLLECTIONS: dict[str, list[tuple[str, str]]] = {
    V1P1: [(V1P1, n) for n in [*_ROSTER_NAMES, *_GRADEBOOK_NAMES, "resources"]],
    V1P2: [
        *[(ROSTERING[V1P2], n) for n in _ROSTER_NAMES],
        *[(GRADEBOOK[V1P2], n) for n in _GRADEBOOK_NAMES + _GRADEBOOK_V1P2_ONLY],
        (RESOURCES[V1P2], "resources"),
    ],
}

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")  # W3C ISO 8601, UTC
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------------------------------------
# The consumer: an HTTP client that knows only the proxy's URL and its token.


@dataclass
class Answer:
    status: int
    data: Any
    headers: Any
    links: dict[str, str]  # rel -> URL

    def records(self, wrapper: str) -> list[dict[str, Any]]:
        assert self.status == 200, (self.status, self.data)
        assert isinstance(self.data, dict) and isinstance(self.data.get(wrapper), list), self.data
        return self.data[wrapper]

    @property
    def total(self) -> int:
        return int(self.headers["X-Total-Count"])


@dataclass
class Consumer:
    http: aiohttp.ClientSession
    proxy: ProxyHarness
    sandbox: Any
    token: str
    _cache: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"{self.proxy.url}/{APP}/ims/oneroster"

    def url(self, rest: str, params: Iterable[tuple[str, str]] = ()) -> str:
        """``rest`` with its query percent-encoded the strict way (RFC 3986 unreserved only)."""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
        return f"{self.root}/{rest}" + (f"?{query}" if query else "")

    async def fetch(self, url: str, method: str = "GET", body: Any = None) -> Answer:
        kwargs: dict[str, Any] = {"headers": auth(self.token)}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            kwargs["headers"] = {**auth(self.token), "Content-Type": "application/json"}
        # encoded=True: the query goes out exactly as built (no re-encoding by the client).
        async with self.http.request(method, URL(url, encoded=True), **kwargs) as resp:
            raw = await resp.read()
            data = json.loads(raw) if raw else None
            links = {rel: str(link["url"]) for rel, link in resp.links.items()}
            return Answer(resp.status, data, resp.headers, links)

    async def get(self, rest: str, *params: tuple[str, str]) -> Answer:
        return await self.fetch(self.url(rest, params))

    async def everything(self, rest: str, wrapper: str, *params: tuple[str, str]) -> list[Any]:
        """One page large enough for the whole (small) collection; checks it really is whole."""
        answer = await self.get(rest, *params, ("limit", "5000"))
        records = answer.records(wrapper)
        assert len(records) == answer.total, (rest, len(records), answer.total)
        return records

    async def collection(self, prefix: str, name: str) -> list[dict[str, Any]]:
        """Every record of a top-level collection, read once per module."""
        key = (prefix, name)
        if key not in self._cache:
            self._cache[key] = await self.everything(f"{prefix}/{name}", WRAPPERS[name][0])
        return self._cache[key]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def consumer(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Consumer]:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    tmp: Path = tmp_path_factory.mktemp("conformance")
    sandbox = await start_sandbox(SandboxOptions())
    proxy = ProxyHarness(tmp, base_config(tmp, sandbox))
    await proxy.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Consumer(http, proxy, sandbox, await proxy.token())
    finally:
        await proxy.stop()
        await sandbox.close()


def sid(ref: Any) -> str:
    assert isinstance(ref, dict) and isinstance(ref.get("sourcedId"), str), ref
    return ref["sourcedId"]


# ---------------------------------------------------------------------------------------------
# Ids discovered by walking the API through the proxy, as a vendor does on day one.


async def discover(c: Consumer, version: str) -> dict[str, str]:
    """One real id per collection name, all mutually consistent (the class is in the school,
    the student is in the class, the line item belongs to the class, ...)."""
    rost, gb, res = ROSTERING[version], GRADEBOOK[version], RESOURCES[version]
    schools = (await c.get(f"{rost}/schools")).records("orgs")
    assert schools, "a district with no schools"
    school = schools[0]["sourcedId"]
    classes = (await c.get(f"{rost}/schools/{school}/classes")).records("classes")
    # A class with resources, so that classes/{id}/resources has something to say.
    klass = next(k for k in classes if k.get("resources"))
    class_id = klass["sourcedId"]
    student = (await c.get(f"{rost}/classes/{class_id}/students")).records("users")[0]
    teacher = (await c.get(f"{rost}/classes/{class_id}/teachers")).records("users")[0]
    term = sid(klass["terms"][0])
    grading_period = (await c.get(f"{rost}/terms/{term}/gradingPeriods")).records(
        "academicSessions"
    )[0]
    enrollment = (await c.get(f"{rost}/schools/{school}/classes/{class_id}/enrollments")).records(
        "enrollments"
    )[0]
    line_item = (await c.get(f"{gb}/classes/{class_id}/lineItems")).records("lineItems")[0]
    result = (
        await c.get(f"{gb}/classes/{class_id}/lineItems/{line_item['sourcedId']}/results")
    ).records("results")[0]
    resource = (await c.get(f"{res}/classes/{class_id}/resources")).records("resources")[0]
    ids = {
        "academicSessions": grading_period["sourcedId"],
        "classes": class_id,
        "courses": sid(klass["course"]),
        "demographics": sid(result["student"]),  # demographics share the user's sourcedId
        "enrollments": enrollment["sourcedId"],
        "gradingPeriods": grading_period["sourcedId"],
        "orgs": school,
        "schools": school,
        # The student with a result in this class, so classes/{id}/students/{id}/results is
        # not empty.
        "students": sid(result["student"]),
        "teachers": teacher["sourcedId"],
        "terms": term,
        "users": student["sourcedId"],
        "categories": sid(line_item["category"]),
        "lineItemCategories": sid(line_item["category"]),
        "lineItems": line_item["sourcedId"],
        "results": result["sourcedId"],
        "resources": resource["sourcedId"],
    }
    if version == V1P2:
        ids["scoreScales"] = (await c.get(f"{gb}/classes/{class_id}/scoreScales")).records(
            "scoreScales"
        )[0]["sourcedId"]
        ids["assessmentLineItems"] = (await c.get(f"{gb}/assessmentLineItems")).records(
            "assessmentLineItems"
        )[0]["sourcedId"]
        ids["assessmentResults"] = (await c.get(f"{gb}/assessmentResults")).records(
            "assessmentResults"
        )[0]["sourcedId"]
    return ids


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ids(consumer: Consumer) -> dict[str, dict[str, str]]:
    return {version: await discover(consumer, version) for version in (V1P1, V1P2)}


def fill(template: str, ids: dict[str, str]) -> str:
    """``classes/{}/students/{}/results`` -> the path with the id of the collection before each
    placeholder."""
    parts = template.split("/")
    for i, part in enumerate(parts):
        if part == "{}":
            parts[i] = ids[parts[i - 1]]
    return "/".join(parts)


def _get_templates() -> list[tuple[str, str]]:
    return [
        (prefix, template)
        for prefix, templates in endpoint_templates().items()
        for template in templates
        if not (prefix != "v1p1" and template in POST_ONLY_V1P2)
    ]


# ---------------------------------------------------------------------------------------------
# 1. Every GET endpoint answers with the right wrapper, count and Links.


def assert_links_point_at_proxy(c: Consumer, answer: Answer, prefix: str, path: str) -> None:
    assert {"first", "last"} <= set(answer.links), answer.links
    expected = f"{c.root}/{prefix}/{path}?"
    for rel, target in answer.links.items():
        assert target.startswith(expected), (rel, target)
        assert c.sandbox.base_url not in target


@pytest.mark.parametrize(("prefix", "template"), _get_templates())
async def test_every_get_endpoint(consumer, ids, prefix, template):
    version = PREFIX_VERSION[prefix]
    path = fill(template, ids[version])
    answer = await consumer.get(f"{prefix}/{path}")
    assert answer.status == 200, (path, answer.data)
    assert answer.headers["Content-Type"].startswith("application/json")
    assert isinstance(answer.data, dict)
    name = template.split("/")[-1] if not template.endswith("{}") else template.split("/")[-2]
    plural, singular = WRAPPERS[name]
    if template.endswith("{}"):
        assert list(answer.data) == [singular], list(answer.data)
        record = answer.data[singular]
        assert record["sourcedId"] == path.rsplit("/", 1)[1]
        return
    assert list(answer.data) == [plural], list(answer.data)
    records = answer.records(plural)
    total = answer.total
    assert total > 0, f"{path}: the discovered ids should make every endpoint non-empty"
    assert len(records) == min(total, 100), "default limit is 100 (1.1 §3.4.1, 1.2 OpenAPI)"
    assert len({r["sourcedId"] for r in records}) == len(records)
    assert_links_point_at_proxy(consumer, answer, prefix, path)
    # Subset endpoints return only their kind.
    if name == "students":
        assert all(role_of(r) == "student" for r in records)
    if name == "teachers":
        assert all(role_of(r) == "teacher" for r in records)
    if name == "schools":
        assert all(r["type"] == "school" for r in records)
    if name == "terms":
        assert all(r["type"] in ("term", "semester") for r in records)
    if name == "gradingPeriods":
        assert all(r["type"] == "gradingPeriod" for r in records)


@pytest.mark.parametrize("template", sorted(POST_ONLY_V1P2))
async def test_post_only_gradebook_paths_refuse_get(consumer, ids, template):
    answer = await consumer.get(f"gradebook/v1p2/{fill(template, ids[V1P2])}")
    assert answer.status == 405, answer.data
    assert "POST" in answer.headers["Allow"]
    assert_imsx(answer.data, "invaliddata")


# ---------------------------------------------------------------------------------------------
# 2. Entity shape per the information model.


def role_of(user: dict[str, Any]) -> str:
    if "role" in user:
        return str(user["role"])
    primary = [r for r in user.get("roles", []) if r.get("roleType") == "primary"]
    return str(primary[0]["role"]) if primary else ""


_BASE = ("sourcedId", "status", "dateLastModified")
REQUIRED: dict[str, dict[str, tuple[str, ...]]] = {
    V1P1: {
        "orgs": ("name", "type"),
        "academicSessions": ("title", "startDate", "endDate", "type", "schoolYear"),
        "courses": ("title", "org"),
        "classes": ("title", "classType", "course", "school", "terms"),
        "enrollments": ("user", "class", "school", "role"),
        "users": ("username", "enabledUser", "givenName", "familyName", "role", "orgs"),
        "demographics": (),
        "categories": ("title",),
        "lineItems": (
            "title",
            "assignDate",
            "dueDate",
            "class",
            "category",
            "gradingPeriod",
            "resultValueMin",
            "resultValueMax",
        ),
        "results": ("lineItem", "student", "scoreStatus", "score", "scoreDate"),
        "resources": ("vendorResourceId",),
    },
    V1P2: {
        "orgs": ("name", "type", "identifier"),
        "academicSessions": ("title", "startDate", "endDate", "type", "schoolYear"),
        "courses": ("title", "courseCode"),
        "classes": ("title", "course", "school", "terms"),
        "enrollments": ("user", "class", "school", "role"),
        "users": ("enabledUser", "givenName", "familyName", "roles"),
        "demographics": (),
        "categories": ("title",),
        "lineItems": ("title", "assignDate", "dueDate", "class", "school", "category"),
        "results": ("lineItem", "student", "scoreStatus", "scoreDate"),
        "scoreScales": ("title", "type", "class", "scoreScaleValue"),
        "assessmentLineItems": ("title",),
        "assessmentResults": ("assessmentLineItem", "student", "scoreStatus", "scoreDate"),
        "resources": ("title", "vendorResourceId"),
    },
}

#: field -> GUIDRef type it must carry (1.1 §4 and the 1.2 "...GUIDRefDType" enums).
REF_TYPES: dict[str, dict[str, str]] = {
    "orgs": {"parent": "org", "children": "org"},
    "academicSessions": {"parent": "academicSession", "children": "academicSession",
                         "org": "org"},
    "courses": {"org": "org", "schoolYear": "academicSession", "resources": "resource"},
    "classes": {"course": "course", "school": "org", "terms": "academicSession",
                "resources": "resource"},
    "enrollments": {"user": "user", "class": "class", "school": "org"},
    "users": {"orgs": "org", "agents": "user", "primaryOrg": "org"},
    "lineItems": {"class": "class", "school": "org", "category": "category",
                  "gradingPeriod": "academicSession", "academicSession": "academicSession",
                  "scoreScale": "scoreScale"},
    "results": {"lineItem": "lineItem", "student": "user", "class": "class",
                "scoreScale": "scoreScale"},
    "scoreScales": {"class": "class", "course": "course"},
    "assessmentResults": {"assessmentLineItem": "assessmentLineItem", "student": "user"},
}  # fmt: skip

ENUMS: dict[str, dict[str, frozenset[str]]] = {
    "orgs": {"type": frozenset({"department", "school", "district", "local", "state",
                                "national"})},
    "academicSessions": {"type": frozenset({"gradingPeriod", "semester", "schoolYear",
                                            "term"})},
    "classes": {"classType": frozenset({"homeroom", "scheduled"})},
    "enrollments": {"role": frozenset({"administrator", "proctor", "student", "teacher", "aide"})},
    "results": {"scoreStatus": frozenset({"exempt", "fully graded", "not submitted",
                                          "partially graded", "submitted"})},
}  # fmt: skip
USER_ROLES = {
    V1P1: frozenset({"administrator", "aide", "guardian", "parent", "proctor", "relative",
                     "student", "teacher"}),
    V1P2: frozenset({"aide", "counselor", "districtAdministrator", "guardian", "parent",
                     "principal", "proctor", "relative", "siteAdministrator", "student",
                     "systemAdministrator", "teacher"}),
}  # fmt: skip


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"href", "sourcedId", "type"}


def refs_of(record: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(field, GUIDRef) for every reference in a record, nested ones included (1.2 roles)."""
    for key, value in record.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if is_ref(item):
                yield key, item
            elif isinstance(item, dict):
                yield from refs_of(item)


def shape_problems(version: str, name: str, record: dict[str, Any]) -> list[str]:
    problems = []
    for key in _BASE + REQUIRED[version][name]:
        if key not in record or record[key] in (None, ""):
            problems.append(f"missing {key}")
    if record.get("status") not in ("active", "tobedeleted"):
        problems.append(f"status {record.get('status')!r}")
    if not _DATETIME.match(str(record.get("dateLastModified", ""))):
        problems.append(f"dateLastModified {record.get('dateLastModified')!r}")
    for key in ("startDate", "endDate", "beginDate", "birthDate"):
        if key in record and not _DATE.match(str(record[key])):
            problems.append(f"{key} {record[key]!r} is not YYYY-MM-DD")
    for key in ("assignDate", "dueDate"):
        if key in record and not _DATETIME.match(str(record[key])):
            problems.append(f"{key} {record[key]!r}")
    if name == "academicSessions" and not re.fullmatch(r"\d{4}", str(record.get("schoolYear"))):
        problems.append(f"schoolYear {record.get('schoolYear')!r} is not YYYY")
    for key, allowed in ENUMS.get(name, {}).items():
        if key in record and record[key] not in allowed:
            problems.append(f"{key} {record[key]!r}")
    if name == "users":
        if version == V1P1:
            if record.get("role") not in USER_ROLES[V1P1]:
                problems.append(f"role {record.get('role')!r}")
            if not record.get("orgs"):
                problems.append("no orgs")
        else:
            roles = record.get("roles") or []
            if not roles:
                problems.append("roles is empty (minItems 1)")
            for role in roles:
                if not {"roleType", "role", "org"} <= set(role):
                    problems.append(f"role {role!r} lacks roleType/role/org")
                elif role["role"] not in USER_ROLES[V1P2] or role["roleType"] not in (
                    "primary",
                    "secondary",
                ):
                    problems.append(f"role {role!r}")
    if name == "classes" and not record.get("terms"):
        problems.append("terms is empty (minItems 1)")
    expected_types = REF_TYPES.get(name, {})
    for key, value in record.items():
        if key not in expected_types:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not is_ref(item):
                problems.append(f"{key} is not a GUIDRef {{href, sourcedId, type}}: {item!r}")
            elif item["type"] != expected_types[key]:
                problems.append(f"{key}.type {item['type']!r} != {expected_types[key]!r}")
    return problems


@pytest.mark.parametrize(
    ("version", "prefix", "name"),
    [(v, p, n) for v, entries in COLLECTIONS.items() for p, n in entries],
)
async def test_entity_shape(consumer, version, prefix, name):
    records = await consumer.collection(prefix, name)
    assert records, f"{prefix}/{name} is empty"
    problems = {
        r.get("sourcedId", "?"): p for r in records if (p := shape_problems(version, name, r))
    }
    assert not problems, dict(list(problems.items())[:5])
    # sourcedIds are unique within a collection; 1.1 users' emails are unique (SPEC).
    assert len({r["sourcedId"] for r in records}) == len(records)
    if name == "users":
        emails = [r["email"] for r in records if r.get("email")]
        assert len(emails) == len(set(emails))


async def test_same_district_in_both_versions(consumer):
    """A 1.1 and a 1.2 consumer of one district see the same records."""
    pairs = [
        ("orgs", "orgs"), ("academicSessions", "academicSessions"), ("courses", "courses"),
        ("classes", "classes"), ("enrollments", "enrollments"), ("users", "users"),
        ("demographics", "demographics"),
    ]  # fmt: skip
    for v11, v12 in pairs:
        a = {r["sourcedId"] for r in await consumer.collection(ROSTERING[V1P1], v11)}
        b = {r["sourcedId"] for r in await consumer.collection(ROSTERING[V1P2], v12)}
        assert a == b, v11
    for name in ("categories", "lineItems", "results"):
        a = {r["sourcedId"] for r in await consumer.collection(GRADEBOOK[V1P1], name)}
        b = {r["sourcedId"] for r in await consumer.collection(GRADEBOOK[V1P2], name)}
        assert a == b, name


async def test_v1p1_booleans_are_strings(consumer):
    """1.1 JSON binding: booleans are the strings "true"/"false"."""
    users = await consumer.collection(ROSTERING[V1P1], "users")
    assert {u["enabledUser"] for u in users} <= {"true", "false"}
    enrollments = await consumer.collection(ROSTERING[V1P1], "enrollments")
    assert {e["primary"] for e in enrollments if "primary" in e} <= {"true", "false"}
    demographics = await consumer.collection(ROSTERING[V1P1], "demographics")
    for flag in ("white", "asian", "hispanicOrLatinoEthnicity", "demographicRaceTwoOrMoreRaces"):
        assert {d[flag] for d in demographics if flag in d} <= {"true", "false"}, flag


async def test_v1p2_booleans_are_strings(consumer):
    users = await consumer.collection(ROSTERING[V1P2], "users")
    assert {u["enabledUser"] for u in users} <= {"true", "false"}
    enrollments = await consumer.collection(ROSTERING[V1P2], "enrollments")
    assert {e["primary"] for e in enrollments if "primary" in e} <= {"true", "false"}
    demographics = await consumer.collection(ROSTERING[V1P2], "demographics")
    for flag in ("white", "asian", "hispanicOrLatinoEthnicity", "demographicRaceTwoOrMoreRaces"):
        assert {d[flag] for d in demographics if flag in d} <= {"true", "false"}, flag


# ---------------------------------------------------------------------------------------------
# 3. Referential integrity and relationship endpoints.


def expected_href_tail(version: str, ref: dict[str, str]) -> str:
    store, service = REF_TARGET[ref["type"]]
    prefix = "v1p1" if version == V1P1 else f"{service}/v1p2"
    return f"/ims/oneroster/{prefix}/{store}/{ref['sourcedId']}"


@pytest.mark.parametrize("version", [V1P1, V1P2])
async def test_every_reference_resolves(consumer, version):
    """Every GUIDRef of every record names a record that exists (checked against the
    collections), its href names that record's endpoint, and a sample of them - the first
    three of each (collection, field) - answers 200 through the proxy."""
    index: dict[str, dict[str, dict[str, Any]]] = {}
    for prefix, name in COLLECTIONS[version]:
        index[name] = {r["sourcedId"]: r for r in await consumer.collection(prefix, name)}
    dangling: list[str] = []
    sample: dict[tuple[str, str], list[dict[str, str]]] = {}
    for name, records in index.items():
        for record in records.values():
            for key, ref in refs_of(record):
                store, _ = REF_TARGET[ref["type"]]
                if ref["sourcedId"] not in index[store]:
                    dangling.append(f"{name}/{record['sourcedId']}.{key} -> {ref}")
                assert ref["href"].endswith(expected_href_tail(version, ref)), ref
                picked = sample.setdefault((name, key), [])
                if len(picked) < 3 and ref not in picked:
                    picked.append(ref)
    assert not dangling, dangling[:5]
    assert len(sample) >= 20, sorted(sample)  # the data really is linked up
    for (name, key), refs in sample.items():
        for ref in refs:
            store, service = REF_TARGET[ref["type"]]
            prefix = "v1p1" if version == V1P1 else f"{service}/v1p2"
            answer = await consumer.get(f"{prefix}/{store}/{ref['sourcedId']}")
            assert answer.status == 200, (name, key, ref, answer.data)
            assert answer.data[WRAPPERS[store][1]]["sourcedId"] == ref["sourcedId"]


async def test_hrefs_are_absolute_uris(consumer):
    users = await consumer.collection(ROSTERING[V1P1], "users")
    for _, ref in refs_of(users[0]):
        parts = urlsplit(ref["href"])
        assert parts.scheme in ("http", "https") and parts.netloc, ref


def ids_of(records: Iterable[dict[str, Any]]) -> set[str]:
    return {r["sourcedId"] for r in records}


@pytest.mark.parametrize("version", [V1P1, V1P2])
async def test_class_rosters_agree_with_enrollments(consumer, version):
    """classes/{id}/students and /teachers == the users enrolled with that role, read both with
    a dotted filter on enrollments and by filtering the whole enrollments list here."""
    rost = ROSTERING[version]
    enrollments = await consumer.collection(rost, "enrollments")
    classes = await consumer.collection(rost, "classes")
    users = {u["sourcedId"]: u for u in await consumer.collection(rost, "users")}
    for klass in classes:
        cid = klass["sourcedId"]
        for role, endpoint in (("student", "students"), ("teacher", "teachers")):
            expected = {
                sid(e["user"]) for e in enrollments
                if sid(e["class"]) == cid and e["role"] == role and e["status"] == "active"
            }  # fmt: skip
            assert expected, (cid, role)
            listed = await consumer.everything(f"{rost}/classes/{cid}/{endpoint}", "users")
            assert ids_of(listed) == expected, (cid, role)
            assert all(role_of(users[u]) == role for u in expected)
        filtered = await consumer.everything(
            f"{rost}/enrollments", "enrollments",
            ("filter", f"class.sourcedId='{cid}' AND role='student'"),
        )  # fmt: skip
        assert {sid(e["user"]) for e in filtered} == ids_of(
            await consumer.everything(f"{rost}/classes/{cid}/students", "users")
        )
        # The enrollment's school is the class's school.
        assert {sid(e["school"]) for e in enrollments if sid(e["class"]) == cid} == {
            sid(klass["school"])
        }


@pytest.mark.parametrize("version", [V1P1, V1P2])
async def test_relationship_endpoints_agree_with_collections(consumer, version, ids):
    rost, gb, res = ROSTERING[version], GRADEBOOK[version], RESOURCES[version]
    my = ids[version]
    classes = await consumer.collection(rost, "classes")
    enrollments = await consumer.collection(rost, "enrollments")
    sessions = await consumer.collection(rost, "academicSessions")
    users = await consumer.collection(rost, "users")
    courses = await consumer.collection(rost, "courses")
    line_items = await consumer.collection(gb, "lineItems")
    results = await consumer.collection(gb, "results")
    resources = await consumer.collection(res, "resources")
    school, klass, course, term = my["schools"], my["classes"], my["courses"], my["terms"]
    student, teacher = my["students"], my["teachers"]

    def user_orgs(u: dict[str, Any]) -> set[str]:
        if version == V1P1:
            return {sid(o) for o in u["orgs"]}
        return {sid(r["org"]) for r in u["roles"]}

    def classes_of(user: str) -> set[str]:
        return {sid(e["class"]) for e in enrollments if sid(e["user"]) == user}

    line_items_of_class = {li["sourcedId"] for li in line_items if sid(li["class"]) == klass}
    class_by_id = {c["sourcedId"]: c for c in classes}
    expectations: dict[str, tuple[str, set[str]]] = {
        f"{rost}/schools/{school}/classes":
            ("classes", {c["sourcedId"] for c in classes if sid(c["school"]) == school}),
        f"{rost}/schools/{school}/courses":
            ("courses", {c["sourcedId"] for c in courses if sid(c["org"]) == school}),
        f"{rost}/schools/{school}/enrollments":
            ("enrollments", {e["sourcedId"] for e in enrollments if sid(e["school"]) == school}),
        f"{rost}/schools/{school}/students":
            ("users", {u["sourcedId"] for u in users
                       if role_of(u) == "student" and school in user_orgs(u)}),
        f"{rost}/schools/{school}/teachers":
            ("users", {u["sourcedId"] for u in users
                       if role_of(u) == "teacher" and school in user_orgs(u)}),
        f"{rost}/schools/{school}/classes/{klass}/enrollments":
            ("enrollments", {e["sourcedId"] for e in enrollments if sid(e["class"]) == klass}),
        f"{rost}/courses/{course}/classes":
            ("classes", {c["sourcedId"] for c in classes if sid(c["course"]) == course}),
        f"{rost}/terms/{term}/classes":
            ("classes", {c["sourcedId"] for c in classes
                         if term in {sid(t) for t in c["terms"]}}),
        f"{rost}/terms/{term}/gradingPeriods":
            ("academicSessions", {s["sourcedId"] for s in sessions
                                  if s["type"] == "gradingPeriod"
                                  and sid(s.get("parent") or {"sourcedId": ""}) == term}),
        f"{rost}/students/{student}/classes": ("classes", classes_of(student)),
        f"{rost}/teachers/{teacher}/classes": ("classes", classes_of(teacher)),
        f"{rost}/users/{student}/classes": ("classes", classes_of(student)),
        f"{gb}/classes/{klass}/lineItems": ("lineItems", line_items_of_class),
        f"{gb}/classes/{klass}/results":
            ("results", {r["sourcedId"] for r in results
                         if sid(r["lineItem"]) in line_items_of_class}),
        f"{gb}/classes/{klass}/lineItems/{my['lineItems']}/results":
            ("results", {r["sourcedId"] for r in results
                         if sid(r["lineItem"]) == my["lineItems"]}),
        f"{gb}/classes/{klass}/students/{student}/results":
            ("results", {r["sourcedId"] for r in results
                         if sid(r["student"]) == student
                         and sid(r["lineItem"]) in line_items_of_class}),
        f"{res}/classes/{klass}/resources":
            ("resources", {sid(r) for r in class_by_id[klass].get("resources", [])}),
        f"{res}/courses/{course}/resources":
            ("resources", {sid(r) for c in courses if c["sourcedId"] == course
                           for r in c.get("resources", [])}),
    }  # fmt: skip
    assert ids_of(resources) >= expectations[f"{res}/classes/{klass}/resources"][1]
    for path, (wrapper, expected) in expectations.items():
        assert expected, f"{path}: nothing to compare"
        assert ids_of(await consumer.everything(path, wrapper)) == expected, path
    # A term of the school's district is one of the school's terms.
    school_terms = ids_of(
        await consumer.everything(f"{rost}/schools/{school}/terms", "academicSessions")
    )
    assert term in school_terms
    # The gradebook data hangs together: each result's student is enrolled (as a student) in
    # the class of its line item.
    li_class = {li["sourcedId"]: sid(li["class"]) for li in line_items}
    enrolled = {(sid(e["user"]), sid(e["class"])) for e in enrollments if e["role"] == "student"}
    assert all((sid(r["student"]), li_class[sid(r["lineItem"])]) in enrolled for r in results)


@pytest.mark.parametrize("version", [V1P1, V1P2])
async def test_subset_endpoints_refuse_records_of_another_kind(consumer, version):
    """students/{id} of a parent, teachers/{id} of a student, schools/{id} of the district,
    terms/{id} of a grading period: 404, the record is not of that kind."""
    rost = ROSTERING[version]
    users = await consumer.collection(rost, "users")
    orgs = await consumer.collection(rost, "orgs")
    sessions = await consumer.collection(rost, "academicSessions")
    parent = next(u for u in users if role_of(u) in ("parent", "guardian"))
    student = next(u for u in users if role_of(u) == "student")
    district = next(o for o in orgs if o["type"] == "district")
    period = next(s for s in sessions if s["type"] == "gradingPeriod")
    for path in (f"students/{parent['sourcedId']}", f"teachers/{student['sourcedId']}",
                 f"schools/{district['sourcedId']}", f"terms/{period['sourcedId']}"):  # fmt: skip
        answer = await consumer.get(f"{rost}/{path}")
        assert answer.status == 404, (path, answer.data)
        assert_imsx(answer.data, "unknownobject")


# ---------------------------------------------------------------------------------------------
# 4. Paging.


async def walk(c: Consumer, url: str, wrapper: str) -> tuple[list[str], int, int]:
    """Follow ``next`` Links from ``url``; (ids in order, X-Total-Count, pages)."""
    seen: list[str] = []
    pages = 0
    total = None
    while url:
        answer = await c.fetch(url)
        pages += 1
        assert pages < 500, "next Links never end"
        records = answer.records(wrapper)
        total = answer.total if total is None else total
        assert answer.total == total, "X-Total-Count changed while paging"
        seen += [r["sourcedId"] for r in records]
        url = answer.links.get("next", "")
        if url:
            assert url.startswith(c.root), url
            assert len(records) == 7
            assert "prev" in answer.links or pages == 1
    assert total is not None
    return seen, total, pages


@pytest.mark.parametrize(
    ("rest", "wrapper", "params"),
    [
        ("v1p1/users", "users", ()),
        ("v1p1/enrollments", "enrollments", ()),
        ("v1p1/users", "users", (("filter", "role='student'"),)),
        ("rostering/v1p2/classes", "classes", ()),
        ("rostering/v1p2/students", "users", (("sort", "familyName"),)),
        ("gradebook/v1p2/lineItems", "lineItems", ()),
        ("resources/v1p2/resources", "resources", ()),
    ],
)
async def test_paging_by_next_links(consumer, rest, wrapper, params):
    first = consumer.url(rest, [*params, ("limit", "7")])
    seen, total, pages = await walk(consumer, first, wrapper)
    assert len(seen) == len(set(seen)) == total
    assert pages == math.ceil(total / 7)
    whole = await consumer.everything(rest, wrapper, *params)
    assert set(seen) == ids_of(whole)
    if any(k == "sort" for k, _ in params):
        assert seen == [r["sourcedId"] for r in whole], "pages of a sorted list keep its order"


async def test_first_last_prev_links(consumer):
    answer = await consumer.get("v1p1/users", ("limit", "7"), ("offset", "14"))
    total = answer.total
    query = {rel: dict(parse_qsl(urlsplit(u).query)) for rel, u in answer.links.items()}
    assert query["first"]["offset"] == "0"
    assert query["prev"]["offset"] == "7"
    assert query["next"]["offset"] == "21"
    assert int(query["last"]["offset"]) == ((total - 1) // 7) * 7
    assert all(q["limit"] == "7" for q in query.values())
    last = await consumer.fetch(answer.links["last"])
    assert "next" not in last.links
    assert 1 <= len(last.records("users")) <= 7


@pytest.mark.parametrize("rest", ["v1p1/users", "rostering/v1p2/orgs", "gradebook/v1p2/results"])
async def test_offset_beyond_the_end_is_an_empty_page(consumer, rest):
    wrapper = WRAPPERS[rest.rsplit("/", 1)[1]][0]
    total = (await consumer.get(rest, ("limit", "1"))).total
    answer = await consumer.get(rest, ("offset", str(total + 5)))
    assert answer.status == 200
    assert answer.records(wrapper) == []
    assert answer.total == total


# ---------------------------------------------------------------------------------------------
# 5. Filters, sort, fields.

Pred = Callable[[dict[str, Any]], bool]

FILTER_CASES: list[tuple[str, str, str, Pred]] = [
    ("v1p1", "users", "role='student'", lambda u: u["role"] == "student"),
    ("v1p1", "users", "role!='student'", lambda u: u["role"] != "student"),
    ("v1p1", "users", "status='active'", lambda u: u["status"] == "active"),
    ("v1p1", "results", "score>'90'", lambda r: r["score"] > 90),
    ("v1p1", "results", "score>='90'", lambda r: r["score"] >= 90),
    ("gradebook/v1p2", "results", "score<'60'", lambda r: r["score"] < 60),
    ("gradebook/v1p2", "results", "score<='60'", lambda r: r["score"] <= 60),
    ("v1p1", "users", "email~'students.springfield'",
     lambda u: "students.springfield" in u["email"]),
    ("v1p1", "users", "role='student' AND givenName='Zoë'",
     lambda u: u["role"] == "student" and u["givenName"] == "Zoë"),
    ("rostering/v1p2", "users", "givenName='Zoë' OR givenName='José'",
     lambda u: u["givenName"] in ("Zoë", "José")),
    ("v1p1", "academicSessions", "title='Fall 2025'", lambda s: s["title"] == "Fall 2025"),
    ("rostering/v1p2", "courses", "title='Español I'", lambda c: c["title"] == "Español I"),
    ("v1p1", "users", "familyName='García'", lambda u: u["familyName"] == "García"),
    ("v1p1", "users", "familyName='O'Brien'", lambda u: u["familyName"] == "O'Brien"),
    ("rostering/v1p2", "users", "roles.role='teacher'",
     lambda u: any(r["role"] == "teacher" for r in u["roles"])),
    ("rostering/v1p2", "classes", "school.sourcedId!='none' AND classCode~'SHS-'",
     lambda c: "SHS-" in c["classCode"]),
    ("v1p1", "users", "dateLastModified>'2025-06-01T00:00:00.000Z'",
     lambda u: u["dateLastModified"] > "2025-06-01T00:00:00.000Z"),
    ("rostering/v1p2", "enrollments", "dateLastModified<='2025-03-01T00:00:00.000Z'",
     lambda e: e["dateLastModified"] <= "2025-03-01T00:00:00.000Z"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("prefix", "name", "expression", "predicate"),
    FILTER_CASES,
    ids=[f"{p}/{n}?{e}" for p, n, e, _ in FILTER_CASES],
)
async def test_filter_matches_client_side_filtering(consumer, prefix, name, expression, predicate):
    wrapper = WRAPPERS[name][0]
    everything = await consumer.collection(prefix, name)
    expected = {r["sourcedId"] for r in everything if predicate(r)}
    assert expected, f"{expression}: a test that selects nothing proves little"
    if expression not in ("status='active'",):
        assert len(expected) < len(everything), f"{expression}: selects everything"
    answer = await consumer.get(f"{prefix}/{name}", ("filter", expression), ("limit", "5000"))
    assert answer.status == 200, answer.data
    assert ids_of(answer.records(wrapper)) == expected
    assert answer.total == len(expected)


async def test_filter_with_plus_for_space_and_on_a_relationship(consumer, ids):
    """A form-encoded query (``+`` for a space, as many HTTP clients write it) and a filter on a
    relationship endpoint, both through the proxy's OAuth1 signing."""
    url = f"{consumer.root}/v1p1/academicSessions?filter=title%3D%27Fall+2025%27"
    answer = await consumer.fetch(url)
    assert [s["title"] for s in answer.records("academicSessions")] == ["Fall 2025"]
    cid = ids[V1P1]["classes"]
    roster = await consumer.everything(f"v1p1/classes/{cid}/students", "users")
    initial = roster[0]["givenName"][0]
    filtered = await consumer.everything(
        f"v1p1/classes/{cid}/students", "users", ("filter", f"givenName~'{initial}'")
    )
    assert ids_of(filtered) == {
        u["sourcedId"] for u in roster if initial.casefold() in u["givenName"].casefold()
    }


async def test_filtered_paging_keeps_the_filter_in_links(consumer):
    expression = "role='student' AND givenName~'a'"
    first = consumer.url("v1p1/users", [("filter", expression), ("limit", "7")])
    seen, total, _ = await walk(consumer, first, "users")
    expected = {
        u["sourcedId"] for u in await consumer.collection("v1p1", "users")
        if u["role"] == "student" and "a" in u["givenName"].casefold()
    }  # fmt: skip
    assert len(seen) == total == len(expected) and set(seen) == expected


async def test_delta_sync_after_a_gradebook_write(consumer, ids):
    """The sync a vendor runs nightly: ``dateLastModified>'<last sync>'`` returns exactly what
    changed since, here a line item PUT through the proxy; DELETE removes it again."""
    # A second of slack: the district stamps milliseconds, and the sample data is from 2025.
    last_sync = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    since = last_sync.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    line_item_id = f"conformance-{uuid.uuid4()}"
    cid = ids[V1P1]["classes"]
    body = {
        "lineItem": {
            "title": "Conformance Quiz",
            "assignDate": "2025-09-01T00:00:00.000Z",
            "dueDate": "2025-09-08T00:00:00.000Z",
            "class": {"sourcedId": cid, "type": "class"},
            "category": {"sourcedId": ids[V1P1]["categories"], "type": "category"},
            "gradingPeriod": {"sourcedId": ids[V1P1]["gradingPeriods"], "type": "academicSession"},
            "resultValueMin": 0.0,
            "resultValueMax": 10.0,
        }
    }
    url = consumer.url(f"v1p1/lineItems/{line_item_id}")
    try:
        created = await consumer.fetch(url, "PUT", body)
        assert created.status == 201, created.data
        assert (await consumer.fetch(url, "PUT", body)).status == 200  # replace
        for prefix in ("v1p1", "gradebook/v1p2"):
            delta = await consumer.get(
                f"{prefix}/lineItems", ("filter", f"dateLastModified>'{since}'")
            )
            assert [li["sourcedId"] for li in delta.records("lineItems")] == [line_item_id]
            in_class = await consumer.everything(f"{prefix}/classes/{cid}/lineItems", "lineItems")
            assert line_item_id in ids_of(in_class)
    finally:
        deleted = await consumer.fetch(url, "DELETE")
    assert deleted.status == 204
    assert (await consumer.fetch(url)).status == 404


SORT_CASES = [
    ("v1p1/users", "users", "dateLastModified", lambda r: r["dateLastModified"]),
    ("rostering/v1p2/users", "users", "dateLastModified", lambda r: r["dateLastModified"]),
    ("gradebook/v1p2/results", "results", "score", lambda r: r["score"]),
    ("v1p1/orgs", "orgs", "sourcedId", lambda r: r["sourcedId"]),
]


@pytest.mark.parametrize(("rest", "wrapper", "key", "value"), SORT_CASES)
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_sort_and_order_by(consumer, rest, wrapper, key, value, order):
    answer = await consumer.get(rest, ("sort", key), ("orderBy", order), ("limit", "5000"))
    records = answer.records(wrapper)
    assert len(records) == answer.total
    values = [value(r) for r in records]
    # Numbers sort as numbers (score 100 after 99), ISO datetimes and GUIDs as text.
    assert values == sorted(values, reverse=order == "desc"), key
    prefix, name = rest.rsplit("/", 1)
    assert ids_of(records) == ids_of(await consumer.collection(prefix, name))


async def test_sort_by_name_keeps_ascii_names_in_order(consumer):
    records = (await consumer.get("v1p1/users", ("sort", "familyName"), ("limit", "5000"))).records(
        "users"
    )
    plain = [r["familyName"].casefold() for r in records if r["familyName"].isascii()]
    assert plain == sorted(plain)


@pytest.mark.parametrize(
    ("rest", "wrapper", "fields"),
    [
        ("v1p1/users", "users", ("sourcedId", "givenName", "familyName")),
        ("rostering/v1p2/classes", "classes", ("sourcedId", "title", "school")),
        ("gradebook/v1p2/results", "results", ("score",)),
    ],
)
async def test_fields_selects_only_those_fields(consumer, rest, wrapper, fields):
    answer = await consumer.get(rest, ("fields", ",".join(fields)), ("limit", "20"))
    records = answer.records(wrapper)
    assert records and all(set(r) == set(fields) for r in records)
    prefix, name = rest.rsplit("/", 1)
    full = {r["sourcedId"]: r for r in await consumer.collection(prefix, name)}
    if "sourcedId" in fields:
        for r in records:
            assert r == {f: full[r["sourcedId"]][f] for f in fields}


async def test_fields_on_a_single_record_and_with_a_filter(consumer, ids):
    student = ids[V1P1]["students"]
    one = await consumer.get(f"v1p1/users/{student}", ("fields", "sourcedId,email"))
    assert one.status == 200 and set(one.data["user"]) == {"sourcedId", "email"}
    some = await consumer.get(
        "rostering/v1p2/users", ("filter", "givenName='Zoë'"), ("fields", "givenName")
    )
    assert some.records("users") and all(u == {"givenName": "Zoë"} for u in some.data["users"])


# ---------------------------------------------------------------------------------------------
# 6. Errors from the district, through the proxy.


@pytest.mark.parametrize(
    "rest",
    [
        "v1p1/users/no-such-user",
        "v1p1/classes/no-such-class/students",
        "v1p1/lineItems/no-such-line-item",
        "rostering/v1p2/orgs/no-such-org",
        "rostering/v1p2/schools/no-such-school/classes",
        "gradebook/v1p2/results/no-such-result",
        "resources/v1p2/resources/no-such-resource",
    ],
)
async def test_unknown_id_is_404_unknownobject(consumer, rest):
    before = len(consumer.sandbox.recorded)
    answer = await consumer.get(rest)
    assert answer.status == 404
    assert answer.headers["Content-Type"].startswith("application/json")
    assert_imsx(answer.data, "unknownobject")
    # The district said so (the proxy passed the request on), not the proxy itself.
    assert len(consumer.sandbox.recorded) == before + 1


@pytest.mark.parametrize(
    ("params", "code_minor"),
    [
        ((("filter", "favouriteColour='blue'"),), "invalid_filter_field"),
        ((("filter", "role=student"),), "invalid_filter_field"),  # value not quoted
        ((("sort", "favouriteColour"),), "invalid_sort_field"),
        ((("fields", "sourcedId,favouriteColour"),), "invalid_selection_field"),
    ],
)
@pytest.mark.parametrize("rest", ["v1p1/users", "rostering/v1p2/users"])
async def test_bad_query_is_400_with_its_code_minor(consumer, rest, params, code_minor):
    answer = await consumer.get(rest, *params)
    assert answer.status == 400, answer.data
    assert_imsx(answer.data, code_minor)
