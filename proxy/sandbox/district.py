"""What the sandbox district knows and how its endpoints read and write it.

The semantics behind docs/sandbox.md: collections and records per version,
relationship endpoints derived from the records' references (so gradebook writes show up in
``classes/{id}/lineItems`` at once), gradebook writes (PUT creates or replaces, POST creates in
bulk, DELETE removes), and who is visible (``hide_students``; Infinite Campus's 1.1 rule that
students and parents need user accounts, which ``no_student_accounts`` makes hide all of them).
State lives in one ``District`` per app.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from proxy.sandbox.data import Dataset, build_dataset
from proxy.sandbox.endpoints import COLLECTIONS
from proxy.sandbox.options import SandboxOptions
from proxy.sandbox.render import V1P1, V1P2, VERSIONS, Ref, ref_dict

Record = dict[str, Any]


class DistrictError(Exception):
    """An answer the district gives as an imsx error payload."""

    def __init__(self, status: int, code_minor: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code_minor = code_minor
        self.description = description


def not_found(kind: str, sourced_id: str) -> DistrictError:
    return DistrictError(404, "unknownobject", f"{kind} {sourced_id!r} not found.")


def _ref_id(record: Record, field: str) -> str | None:
    value = record.get(field)
    if isinstance(value, dict):
        sid = value.get("sourcedId")
        return sid if isinstance(sid, str) else None
    return None


def _ref_ids(record: Record, field: str) -> list[str]:
    value = record.get(field)
    if not isinstance(value, list):
        return []
    return [v["sourcedId"] for v in value if isinstance(v, dict) and "sourcedId" in v]


def user_role(record: Record) -> str:
    """The primary role of a user in either version's shape."""
    if "role" in record:
        return str(record["role"])
    for role in record.get("roles") or ():
        if isinstance(role, dict) and role.get("roleType", "primary") == "primary":
            return str(role.get("role", ""))
    return ""


def user_org_ids(record: Record) -> list[str]:
    if "orgs" in record:
        return _ref_ids(record, "orgs")
    ids = [
        role["org"]["sourcedId"]
        for role in record.get("roles") or ()
        if isinstance(role, dict) and isinstance(role.get("org"), dict)
    ]
    primary = _ref_id(record, "primaryOrg")
    if primary and primary not in ids:
        ids.append(primary)
    return ids


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_SUBSET: dict[str, Callable[[Record], bool]] = {
    "schools": lambda r: r.get("type") == "school",
    "terms": lambda r: r.get("type") in ("term", "semester"),
    "gradingPeriods": lambda r: r.get("type") == "gradingPeriod",
    "students": lambda r: user_role(r) == "student",
    "teachers": lambda r: user_role(r) == "teacher",
}


class District:
    """Records of both versions plus the visibility rules of the options."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.dataset: Dataset = build_dataset(options.seed, options.base_path or "")
        self.views = self.dataset.views
        self._known_fields: dict[tuple[str, str], frozenset[str]] = {}
        self.infinite_campus = options.profile_name == "infinite-campus"

    # -- visibility ----------------------------------------------------------------------------

    def _hidden_user(self, version: str, record: Record) -> bool:
        role = user_role(record)
        if self.options.hide_students and role == "student":
            return True
        # Infinite Campus, OneRoster 1.1: students and parents appear only with a user account
        # (with no_student_accounts, none of them has one).
        if version != V1P1 or role not in ("student", "parent", "guardian"):
            return False
        if self.options.no_student_accounts:
            return True
        return self.infinite_campus and record.get("sourcedId") in self.dataset.no_account

    def _visible(self, version: str, store: str, record: Record) -> bool:
        if store == "users":
            return not self._hidden_user(version, record)
        if not self.options.hide_students:
            return True
        if store == "enrollments":
            return record.get("role") != "student"
        if store == "demographics":
            user = self.views[version]["users"].get(str(record.get("sourcedId")))
            return user is None or user_role(user) != "student"
        return True

    # -- reads ---------------------------------------------------------------------------------

    def store_of(self, name: str) -> str:
        return COLLECTIONS[name][0]

    def records(self, version: str, name: str) -> list[Record]:
        """Every visible record of endpoint collection ``name`` (``students``, ``terms``...)."""
        store = self.store_of(name)
        subset = _SUBSET.get(name)
        return [
            r
            for r in self.views[version][store].values()
            if (subset is None or subset(r)) and self._visible(version, store, r)
        ]

    def get(self, version: str, name: str, sourced_id: str) -> Record:
        store = self.store_of(name)
        record = self.views[version][store].get(sourced_id)
        subset = _SUBSET.get(name)
        if (
            record is None
            or (subset is not None and not subset(record))
            or not self._visible(version, store, record)
        ):
            raise not_found(COLLECTIONS[name][2], sourced_id)
        return record

    def known_fields(self, version: str, name: str) -> frozenset[str]:
        store = self.store_of(name)
        key = (version, store)
        if key not in self._known_fields:
            names: set[str] = set()
            for record in self.views[version][store].values():
                names.update(record)
            self._known_fields[key] = frozenset(names | {"sourcedId", "status", "dateLastModified"})
        return self._known_fields[key]

    def _users_in(self, version: str, ids: Iterable[str], name: str) -> list[Record]:
        wanted = set(ids)
        return [r for r in self.records(version, name) if r["sourcedId"] in wanted]

    def _enrolled(self, version: str, class_id: str, role: str) -> list[str]:
        return [
            str(_ref_id(e, "user"))
            for e in self.views[version]["enrollments"].values()
            if _ref_id(e, "class") == class_id
            and e.get("role") == role
            and e.get("status") != "tobedeleted"
        ]

    def _class_ids_of_user(self, version: str, user_id: str) -> set[str]:
        return {
            str(_ref_id(e, "class"))
            for e in self.views[version]["enrollments"].values()
            if _ref_id(e, "user") == user_id
        }

    def relation(self, version: str, pattern: str, ids: list[str]) -> list[Record]:
        """Records of a relationship endpoint; 404 when a parent record does not exist."""
        v = self.views[version]
        if pattern == "classes/{id}/students":
            self.get(version, "classes", ids[0])
            return self._users_in(version, self._enrolled(version, ids[0], "student"), "students")
        if pattern == "classes/{id}/teachers":
            self.get(version, "classes", ids[0])
            return self._users_in(version, self._enrolled(version, ids[0], "teacher"), "teachers")
        if pattern == "courses/{id}/classes":
            self.get(version, "courses", ids[0])
            return [c for c in self.records(version, "classes") if _ref_id(c, "course") == ids[0]]
        if pattern.startswith("schools/{id}"):
            return self._school_relation(version, pattern, ids)
        if pattern in ("students/{id}/classes", "teachers/{id}/classes", "users/{id}/classes"):
            self.get(version, pattern.split("/")[0], ids[0])
            mine = self._class_ids_of_user(version, ids[0])
            return [c for c in self.records(version, "classes") if c["sourcedId"] in mine]
        if pattern == "terms/{id}/classes":
            self.get(version, "terms", ids[0])
            return [c for c in self.records(version, "classes") if ids[0] in _ref_ids(c, "terms")]
        if pattern == "terms/{id}/gradingPeriods":
            self.get(version, "terms", ids[0])
            return [
                s for s in self.records(version, "gradingPeriods") if _ref_id(s, "parent") == ids[0]
            ]
        if pattern == "classes/{id}/lineItems":
            self.get(version, "classes", ids[0])
            return [li for li in v["lineItems"].values() if _ref_id(li, "class") == ids[0]]
        if pattern == "classes/{id}/results":
            self.get(version, "classes", ids[0])
            return [r for r in v["results"].values() if self._result_class(version, r) == ids[0]]
        if pattern == "classes/{id}/lineItems/{id}/results":
            self.get(version, "classes", ids[0])
            line_item = self.get(version, "lineItems", ids[1])
            if _ref_id(line_item, "class") != ids[0]:
                raise not_found("lineItem", ids[1])
            return [r for r in v["results"].values() if _ref_id(r, "lineItem") == ids[1]]
        if pattern == "classes/{id}/students/{id}/results":
            self.get(version, "classes", ids[0])
            self.get(version, "students", ids[1])
            return [
                r
                for r in v["results"].values()
                if _ref_id(r, "student") == ids[1] and self._result_class(version, r) == ids[0]
            ]
        if pattern == "classes/{id}/categories":
            self.get(version, "classes", ids[0])
            used = {
                _ref_id(li, "category")
                for li in v["lineItems"].values()
                if _ref_id(li, "class") == ids[0]
            }
            return [c for c in v["categories"].values() if c["sourcedId"] in used]
        if pattern == "classes/{id}/scoreScales":
            self.get(version, "classes", ids[0])
            return [s for s in v["scoreScales"].values() if _ref_id(s, "class") == ids[0]]
        if pattern == "classes/{id}/resources":
            klass = self.get(version, "classes", ids[0])
            wanted = set(_ref_ids(klass, "resources"))
            return [r for r in v["resources"].values() if r["sourcedId"] in wanted]
        if pattern == "courses/{id}/resources":
            course = self.get(version, "courses", ids[0])
            wanted = set(_ref_ids(course, "resources"))
            return [r for r in v["resources"].values() if r["sourcedId"] in wanted]
        if pattern == "users/{id}/resources":
            self.get(version, "users", ids[0])
            wanted = set()
            for class_id in self._class_ids_of_user(version, ids[0]):
                enrolled_in = v["classes"].get(class_id)
                if enrolled_in is not None:
                    wanted.update(_ref_ids(enrolled_in, "resources"))
            return [r for r in v["resources"].values() if r["sourcedId"] in wanted]
        raise DistrictError(404, "unknownobject", f"No such endpoint {pattern!r}.")

    def _school_relation(self, version: str, pattern: str, ids: list[str]) -> list[Record]:
        v = self.views[version]
        school_id = ids[0]
        school = self.get(version, "schools", school_id)
        if pattern == "schools/{id}/classes":
            return [
                c for c in self.records(version, "classes") if _ref_id(c, "school") == school_id
            ]
        if pattern == "schools/{id}/courses":
            return [c for c in self.records(version, "courses") if _ref_id(c, "org") == school_id]
        if pattern == "schools/{id}/enrollments":
            return [
                e for e in self.records(version, "enrollments") if _ref_id(e, "school") == school_id
            ]
        if pattern in ("schools/{id}/students", "schools/{id}/teachers"):
            name = pattern.rsplit("/", 1)[1]
            return [u for u in self.records(version, name) if school_id in user_org_ids(u)]
        if pattern == "schools/{id}/terms":
            # Terms belong to the district (a session names no org) and so to each school.
            owners = {school_id, _ref_id(school, "parent")}
            return [
                t
                for t in self.records(version, "terms")
                if _ref_id(t, "org") is None or _ref_id(t, "org") in owners
            ]
        if pattern == "schools/{id}/lineItems":
            class_ids = {
                c["sourcedId"] for c in v["classes"].values() if _ref_id(c, "school") == school_id
            }
            return [
                li
                for li in v["lineItems"].values()
                if _ref_id(li, "school") == school_id or _ref_id(li, "class") in class_ids
            ]
        if pattern == "schools/{id}/scoreScales":
            class_ids = {
                c["sourcedId"] for c in v["classes"].values() if _ref_id(c, "school") == school_id
            }
            return [s for s in v["scoreScales"].values() if _ref_id(s, "class") in class_ids]
        # schools/{id}/classes/{id}/...
        klass = self.get(version, "classes", ids[1])
        if _ref_id(klass, "school") != school_id:
            raise not_found("class", ids[1])
        tail = pattern.rsplit("/", 1)[1]
        if tail == "enrollments":
            return [
                e for e in self.records(version, "enrollments") if _ref_id(e, "class") == ids[1]
            ]
        role = "student" if tail == "students" else "teacher"
        return self._users_in(version, self._enrolled(version, ids[1], role), tail)

    def _result_class(self, version: str, result: Record) -> str | None:
        direct = _ref_id(result, "class")
        if direct:
            return direct
        line_item = self.views[version]["lineItems"].get(_ref_id(result, "lineItem") or "")
        return _ref_id(line_item, "class") if line_item else None

    # -- writes --------------------------------------------------------------------------------

    def _stores_for_write(self, store: str) -> list[dict[str, Record]]:
        """The views a write lands in: both versions where the collection exists in both."""
        return [self.views[v][store] for v in VERSIONS if store in self.views[v]]

    def _prepare(self, sourced_id: str, body: Record) -> Record:
        record = dict(body)
        record["sourcedId"] = sourced_id
        record.setdefault("status", "active")
        record["dateLastModified"] = now_iso()
        return record

    def put(self, version: str, name: str, sourced_id: str, body: Record) -> tuple[Record, bool]:
        """Create or replace one record; returns (record, created)."""
        store = self.store_of(name)
        record = self._prepare(sourced_id, body)
        created = sourced_id not in self.views[version][store]
        for view in self._stores_for_write(store):
            view[sourced_id] = record
        self._known_fields.pop((V1P1, store), None)
        self._known_fields.pop((V1P2, store), None)
        return record, created

    def delete(self, version: str, name: str, sourced_id: str) -> None:
        store = self.store_of(name)
        if sourced_id not in self.views[version][store]:
            raise not_found(COLLECTIONS[name][2], sourced_id)
        for view in self._stores_for_write(store):
            view.pop(sourced_id, None)

    def post(
        self, version: str, pattern: str, ids: list[str], items: list[Record]
    ) -> list[dict[str, str]]:
        """Bulk create under a parent (1.2 gradebook POSTs); returns the sourcedIdPairs."""
        refs: dict[str, dict[str, str]] = {}

        def ref(name: str, sid: str, kind: str) -> dict[str, str]:
            self.get(version, name, sid)  # the parent must exist: 404 otherwise
            return ref_dict(Ref(kind, sid), version, self.options.base_path or "")

        if pattern == "classes/{id}/lineItems":
            store, refs = "lineItems", {"class": ref("classes", ids[0], "class")}
        elif pattern == "schools/{id}/lineItems":
            store, refs = "lineItems", {"school": ref("schools", ids[0], "org")}
        elif pattern == "lineItems/{id}/results":
            store, refs = "results", {"lineItem": ref("lineItems", ids[0], "lineItem")}
        elif pattern == "classes/{id}/academicSessions/{id}/results":
            store = "results"
            refs = {"class": ref("classes", ids[0], "class")}
            self.get(version, "academicSessions", ids[1])
        else:
            raise DistrictError(404, "unknownobject", f"No such endpoint {pattern!r}.")
        pairs = []
        for item in items:
            supplied = item.get("sourcedId")
            allocated = supplied if isinstance(supplied, str) and supplied else str(uuid.uuid4())
            record = self._prepare(allocated, {**item, **refs})
            for view in self._stores_for_write(store):
                view[allocated] = record
            pairs.append(
                {"suppliedSourcedId": str(supplied or ""), "allocatedSourcedId": allocated}
            )
        self._known_fields.pop((V1P1, store), None)
        self._known_fields.pop((V1P2, store), None)
        return pairs
