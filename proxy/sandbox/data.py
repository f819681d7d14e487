"""Deterministic sample data of the sandbox district (docs/sandbox.md).

A district with three schools, academic sessions (school year, two terms, four grading periods
linked by parent/children), courses, classes (``school``, ``course``, ``terms`` refs),
enrollments, teachers, students and their parents/guardians (``agents``), demographics,
categories, line items, results, score scales, assessment line items/results and resources.
Everything is generated from a seed, so two sandboxes with one seed serve the same records, and
every reference resolves; ``proxy.sandbox.render`` turns the records into each version's JSON.

One module, longer than most, because it is one unit: name and course tables, and one
generator (``_Gen``) whose steps draw from one seeded random stream in a fixed order and refer
to the records made before them; split apart, a reader would follow one seed across files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from proxy.sandbox.render import STORES, V1P1, V1P2_ONLY_STORES, VERSIONS, Ref, render


@dataclass
class Dataset:
    """Rendered records: ``views[version][store][sourcedId] -> record`` (insertion-ordered)."""

    views: dict[str, dict[str, dict[str, dict[str, Any]]]]
    #: Students and parents without a user account (Infinite Campus hides them on 1.1).
    no_account: frozenset[str]


# ---------------------------------------------------------------------------------------------
# Generation

_GIVEN = [
    "Zoë", "José", "Amelia", "Liam", "Noah", "Olivia", "Mateo", "Sofía", "Chloé", "Björn",
    "Aiyana", "Kwame", "Mei", "Arjun", "Siobhán", "Renée", "Ethan", "Ava", "Lucía", "Dmitri",
    "Fatima", "Hana", "Isaac", "Jamal", "Kenji", "Leilani", "Maya", "Nadia", "Omar", "Priya",
    "Quinn", "Rafael", "Sven", "Thảo", "Uma", "Valentina", "Wei", "Ximena", "Yusuf", "Zara",
]  # fmt: skip
_FAMILY = [
    "O'Brien", "García", "Nguyễn", "Müller", "Smith", "Johnson", "Okafor", "Kowalski",
    "Ólafsdóttir", "Chen", "Patel", "Rodríguez", "Williams", "Brown", "Kim", "Haddad", "Novak",
    "Fernández", "Yamamoto", "Schmidt", "Dubois", "Rossi", "Andersson", "Walker", "López",
    "Martin", "Singh", "Cohen", "Ivanova", "Jones",
]  # fmt: skip

_SCHOOLS = [
    ("Evergreen Elementary School", "EES", ["03", "04", "05"]),
    ("Lincoln Middle School", "LMS", ["06", "07", "08"]),
    ("Springfield High School", "SHS", ["09", "10", "11", "12"]),
]
_COURSES = {
    "EES": [
        ("Reading and Writing", "RW", "Reading", "01001"),
        ("Mathematics", "MA", "Mathematics", "02001"),
        ("Science Explorations", "SC", "Science", "03001"),
        ("Music", "MU", "Fine Arts", "05001"),
    ],
    "LMS": [
        ("English Language Arts", "ELA", "English Language Arts", "01002"),
        ("Pre-Algebra", "PALG", "Mathematics", "02052"),
        ("Life Science", "LSCI", "Science", "03051"),
        ("World History", "WHIS", "Social Studies", "04051"),
    ],
    "SHS": [
        ("English 9", "ENG9", "English Language Arts", "01001"),
        ("Algebra I", "ALG1", "Mathematics", "02052"),
        ("Biology", "BIO", "Science", "03051"),
        ("Español I", "SPAN1", "World Languages", "06101"),
    ],
}
_CATEGORIES = [("Homework", 0.3), ("Quizzes", 0.2), ("Tests", 0.5)]
_RESOURCES = [
    ("Reading Workshop Library", "Reading"),
    ("Math Practice Studio", "Mathematics"),
    ("Virtual Science Lab", "Science"),
    ("Primary Sources Archive", "Social Studies"),
    ("Language Lab: Español", "World Languages"),
    ("Music Theory Games", "Fine Arts"),
]


def _ascii(text: str) -> str:
    """Fold a name to the ASCII a username or email local part uses."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


class _Gen:
    """Builds the version-neutral records; ``rng`` drives every choice."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.stores: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in STORES}
        self.no_account: set[str] = set()
        self.emails: set[str] = set()

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def modified(self) -> str:
        month = self.rng.randint(1, 9)
        day = self.rng.randint(1, 28)
        hour, minute, second = (
            self.rng.randint(0, 23),
            self.rng.randint(0, 59),
            self.rng.randint(0, 59),
        )
        return f"2025-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.000Z"

    def base(self, sourced_id: str | None = None) -> dict[str, Any]:
        return {
            "sourcedId": sourced_id or self.guid(),
            "status": "active",
            "dateLastModified": self.modified(),
        }

    def add(self, store: str, record: dict[str, Any]) -> dict[str, Any]:
        self.stores[store][record["sourcedId"]] = record
        return record

    def email(self, given: str, family: str, domain: str) -> str:
        stem = f"{_ascii(given)}.{_ascii(family)}"
        candidate, n = f"{stem}@{domain}", 1
        while candidate in self.emails:
            n += 1
            candidate = f"{stem}{n}@{domain}"
        self.emails.add(candidate)
        return candidate

    # -- rostering -------------------------------------------------------------------------

    def build(self) -> None:
        district = self.add(
            "orgs",
            {
                **self.base(),
                "name": "Springfield Unified School District",
                "type": "district",
                "identifier": "SUSD-001",
                "children": [],
            },
        )
        district_ref = Ref("org", district["sourcedId"])
        schools = []
        for number, (name, code, grades) in enumerate(_SCHOOLS, start=1):
            school = self.add(
                "orgs",
                {
                    **self.base(),
                    "name": name,
                    "type": "school",
                    "identifier": f"{code}-{100 + number}",
                    "parent": district_ref,
                    "children": [],
                },
            )
            district["children"].append(Ref("org", school["sourcedId"]))
            schools.append((school, code, grades))

        sessions = self.sessions()
        year_ref, fall, spring, quarters = sessions
        categories = [
            self.add(
                "categories",
                {**self.base(), "title": title, "v12:weight": weight},
            )
            for title, weight in _CATEGORIES
        ]
        resources = {
            subject: self.add(
                "resources",
                {
                    **self.base(),
                    "title": title,
                    "roles": ["student", "teacher"],
                    "importance": "primary",
                    "vendorResourceId": f"SBX-{index:04d}",
                    "vendorId": "sandbox-vendor",
                    "applicationId": "sandbox-app",
                },
            )
            for index, (title, subject) in enumerate(_RESOURCES, start=1)
        }
        admin = self.user(
            "Dana", "Whitfield", role="administrator", role12="districtAdministrator",
            orgs=[district_ref], grades=[], domain="springfield.example", identifier="A0001",
        )  # fmt: skip
        del admin

        student_counter = 0
        for school, code, grades in schools:
            school_ref = Ref("org", school["sourcedId"])
            teachers = [
                self.user(
                    self.rng.choice(_GIVEN),
                    self.rng.choice(_FAMILY),
                    role="teacher",
                    orgs=[school_ref],
                    grades=[],
                    domain="springfield.example",
                    identifier=f"T{len(self.stores['users']):04d}",
                )
                for _ in range(4)
            ]
            students = []
            for index in range(40):
                if student_counter == 0:
                    given, family = "Zoë", "O'Brien"  # fixed: tests filter on these names
                elif student_counter == 1:
                    given, family = "José", "García"
                else:
                    given, family = self.rng.choice(_GIVEN), self.rng.choice(_FAMILY)
                student = self.user(
                    given, family, role="student", orgs=[school_ref],
                    grades=[grades[index % len(grades)]], domain="students.springfield.example",
                    identifier=f"S{100000 + student_counter}",
                )  # fmt: skip
                if student_counter % 8 == 7:
                    self.no_account.add(student["sourcedId"])
                self.demographics(student, grades[index % len(grades)])
                if student_counter % 2 == 0:
                    parent_role = "parent" if student_counter % 4 == 0 else "guardian"
                    parent = self.user(
                        self.rng.choice(_GIVEN), family, role=parent_role, orgs=[school_ref],
                        grades=[], domain="family.springfield.example", identifier=None,
                    )  # fmt: skip
                    parent["agents"].append(Ref("user", student["sourcedId"]))
                    student["agents"].append(Ref("user", parent["sourcedId"]))
                    if (student_counter // 2) % 5 == 4:
                        self.no_account.add(parent["sourcedId"])
                students.append(student)
                student_counter += 1

            for number, (title, ccode, subject, subject_code) in enumerate(_COURSES[code]):
                course = self.add(
                    "courses",
                    {
                        **self.base(),
                        "title": title,
                        "schoolYear": year_ref,
                        "courseCode": f"{code}-{ccode}",
                        "grades": list(grades),
                        "subjects": [subject],
                        "org": school_ref,
                        "subjectCodes": [subject_code],
                        "resources": [
                            Ref("resource", resources[s]["sourcedId"])
                            for s in resources
                            if s in subject or subject in s
                        ],
                    },
                )
                for section in (1, 2):
                    if code == "SHS":
                        terms = [fall] if section == 1 else [spring]
                    else:
                        terms = [fall, spring]
                    teacher = teachers[(number + section) % len(teachers)]
                    self.klass(
                        course, school_ref, terms, teacher, students, section, quarters, categories
                    )
        self.assessments()

    def sessions(self) -> tuple[Ref, Ref, Ref, dict[str, Ref]]:
        def session(title: str, kind: str, start: str, end: str, parent: Ref | None) -> Ref:
            record = self.add(
                "academicSessions",
                {
                    **self.base(),
                    "title": title,
                    "type": kind,
                    "startDate": start,
                    "endDate": end,
                    "children": [],
                    "schoolYear": "2026",
                    # No ``org``: the 1.2 JSON binding's AcademicSessionDType has none (and
                    # forbids additional properties); sessions belong to the whole district.
                },
            )
            if parent is not None:
                record["parent"] = parent
                self.stores["academicSessions"][parent.sourced_id]["children"].append(
                    Ref("academicSession", record["sourcedId"])
                )
            return Ref("academicSession", record["sourcedId"])

        year = session("2025-2026 School Year", "schoolYear", "2025-08-18", "2026-06-05", None)
        fall = session("Fall 2025", "term", "2025-08-18", "2025-12-19", year)
        spring = session("Spring 2026", "term", "2026-01-05", "2026-06-05", year)
        quarters = {
            "Q1": session("Quarter 1", "gradingPeriod", "2025-08-18", "2025-10-17", fall),
            "Q2": session("Quarter 2", "gradingPeriod", "2025-10-20", "2025-12-19", fall),
            "Q3": session("Quarter 3", "gradingPeriod", "2026-01-05", "2026-03-13", spring),
            "Q4": session("Quarter 4", "gradingPeriod", "2026-03-16", "2026-06-05", spring),
        }
        return year, fall, spring, quarters

    def user(
        self,
        given: str,
        family: str,
        *,
        role: str,
        orgs: list[Ref],
        grades: list[str],
        domain: str,
        identifier: str | None,
        role12: str | None = None,
    ) -> dict[str, Any]:
        record = self.base()
        email = self.email(given, family, domain)
        username = email.split("@", 1)[0]
        middle = self.rng.choice(["", "", "Ann", "Lee", "Marie", "James"])
        record.update(
            {
                "v12:userMasterIdentifier": record["sourcedId"],
                "username": username,
                "userIds": [{"type": "LDAP", "identifier": username}],
                "enabledUser": True,
                "givenName": given,
                "familyName": family,
                "middleName": middle,
                "v12:preferredFirstName": given,
                "v11:role": role,
                "v12:roles": [
                    {
                        "roleType": "primary",
                        "role": role12 or role,
                        "org": orgs[0],
                    }
                ],
                "v12:userProfiles": [],
                "v12:primaryOrg": orgs[0],
                "identifier": identifier or "",
                # OneRoster 1.1 users carry a password (1.2 has none): what the proxy's default
                # sharing policy (drop_fields = ["users.password"]) keeps from vendors. A made-up
                # value derived from the id, so the seeded data stays the same.
                "v11:password": "demo-"
                + hashlib.sha256(record["sourcedId"].encode()).hexdigest()[:12],
                "email": email,
                "sms": "",
                "phone": f"+1-555-{self.rng.randint(100, 999)}-{self.rng.randint(1000, 9999)}",
                "agents": [],
                "v11:orgs": list(orgs),
                "grades": list(grades),
            }
        )
        return self.add("users", record)

    def demographics(self, student: dict[str, Any], grade: str) -> None:
        year = 2026 - 6 - int(grade)
        races = ["white", "asian", "blackOrAfricanAmerican", "americanIndianOrAlaskaNative",
                 "nativeHawaiianOrOtherPacificIslander"]  # fmt: skip
        chosen = self.rng.choice(races)
        record = self.base(student["sourcedId"])
        record.update(
            {
                "birthDate": f"{year}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}",
                "sex": self.rng.choice(["female", "male", "female", "male", "other"]),
                **{race: race == chosen for race in races},
                "demographicRaceTwoOrMoreRaces": False,
                "hispanicOrLatinoEthnicity": self.rng.random() < 0.25,
                "countryOfBirthCode": "US",
                "stateOfBirthAbbreviation": "OR",
                "cityOfBirth": "Springfield",
                "publicSchoolResidenceStatus": "01652",
            }
        )
        self.add("demographics", record)

    def klass(
        self,
        course: dict[str, Any],
        school_ref: Ref,
        terms: list[Ref],
        teacher: dict[str, Any],
        students: list[dict[str, Any]],
        section: int,
        quarters: dict[str, Ref],
        categories: list[dict[str, Any]],
    ) -> None:
        period = str(self.rng.randint(1, 7))
        klass = self.add(
            "classes",
            {
                **self.base(),
                "title": f"{course['title']} - Period {period}",
                "classCode": f"{course['courseCode']}-{section}",
                "classType": "scheduled",
                "location": f"Room {self.rng.randint(100, 299)}",
                "grades": list(course["grades"]),
                "subjects": list(course["subjects"]),
                "course": Ref("course", course["sourcedId"]),
                "school": school_ref,
                "terms": list(terms),
                "subjectCodes": list(course["subjectCodes"]),
                "periods": [period],
                "resources": list(course["resources"]),
            },
        )
        class_ref = Ref("class", klass["sourcedId"])
        begin = self.stores["academicSessions"][terms[0].sourced_id]["startDate"]
        end = self.stores["academicSessions"][terms[-1].sourced_id]["endDate"]

        def enroll(user: dict[str, Any], role: str, primary: bool) -> None:
            self.add(
                "enrollments",
                {
                    **self.base(),
                    "user": Ref("user", user["sourcedId"]),
                    "class": class_ref,
                    "school": school_ref,
                    "role": role,
                    "primary": primary,
                    "beginDate": begin,
                    "endDate": end,
                },
            )

        enroll(teacher, "teacher", True)
        roster = self.rng.sample(students, 15)
        roster.sort(key=lambda s: students.index(s))
        for student in roster:
            enroll(student, "student", False)

        scale = self.add(
            "scoreScales",
            {
                **self.base(),
                "title": f"{klass['classCode']} letter grades",
                "type": "letter",
                "class": class_ref,
                "course": Ref("course", course["sourcedId"]),
                "scoreScaleValue": [
                    {"itemValueLHS": letter, "itemValueRHS": floor}
                    for letter, floor in (
                        ("A", "90"),
                        ("B", "80"),
                        ("C", "70"),
                        ("D", "60"),
                        ("F", "0"),
                    )
                ],
            },
        )
        term_title = self.stores["academicSessions"][terms[0].sourced_id]["title"]
        first_quarter = quarters["Q3"] if term_title.startswith("Spring") else quarters["Q1"]
        quarter = self.stores["academicSessions"][first_quarter.sourced_id]
        for title, category in (("Unit 1 Quiz", categories[1]), ("Unit 1 Test", categories[2])):
            line_item = self.add(
                "lineItems",
                {
                    **self.base(),
                    "title": title,
                    "description": f"{title} for {klass['title']}",
                    "assignDate": f"{quarter['startDate']}T15:00:00.000Z",
                    "dueDate": f"{quarter['endDate']}T23:59:00.000Z",
                    "class": class_ref,
                    "v12:school": school_ref,
                    "category": Ref("category", category["sourcedId"]),
                    "gradingPeriod": first_quarter,
                    "v12:academicSession": first_quarter,
                    "v12:scoreScale": Ref("scoreScale", scale["sourcedId"]),
                    "resultValueMin": 0.0,
                    "resultValueMax": 100.0,
                },
            )
            for student in roster:
                self.add(
                    "results",
                    {
                        **self.base(),
                        "lineItem": Ref("lineItem", line_item["sourcedId"]),
                        "student": Ref("user", student["sourcedId"]),
                        "v12:class": class_ref,
                        "v12:scoreScale": Ref("scoreScale", scale["sourcedId"]),
                        "scoreStatus": "fully graded",
                        "score": float(self.rng.randint(55, 100)),
                        "v12:textScore": "",
                        "scoreDate": quarter["endDate"],
                        "comment": self.rng.choice(["", "", "Great work!", "See me after class."]),
                        "v12:inProgress": "false",
                        "v12:incomplete": "false",
                        "v12:late": "false",
                        "v12:missing": "false",
                    },
                )

    def assessments(self) -> None:
        students = [u for u in self.stores["users"].values() if u["v11:role"] == "student"]
        items = []
        for title in ("Fall Reading Benchmark", "Fall Math Benchmark", "Spring Reading Benchmark"):
            items.append(
                self.add(
                    "assessmentLineItems",
                    {
                        **self.base(),
                        "title": title,
                        "description": f"District-wide {title.lower()}",
                        "resultValueMin": 100.0,
                        "resultValueMax": 300.0,
                    },
                )
            )
        for item in items[:2]:
            for student in students:
                self.add(
                    "assessmentResults",
                    {
                        **self.base(),
                        "assessmentLineItem": Ref("assessmentLineItem", item["sourcedId"]),
                        "student": Ref("user", student["sourcedId"]),
                        "score": float(self.rng.randint(140, 290)),
                        "textScore": "",
                        "scoreDate": "2025-10-01",
                        "scoreStatus": "fully graded",
                        "comment": "",
                    },
                )


def build_dataset(seed: int, base_path: str) -> Dataset:
    """The sample district for ``seed``, rendered for both versions under ``base_path``.

    Each call returns fresh, independently mutable records (a district's writes stay its own).
    """
    frozen, no_account = _frozen_dataset(seed, base_path)
    return Dataset(views=json.loads(frozen), no_account=no_account)


@functools.lru_cache(maxsize=8)
def _frozen_dataset(seed: int, base_path: str) -> tuple[str, frozenset[str]]:
    # Generation is a pure function of (seed, base_path) and costs ~0.3 s; tests start hundreds
    # of districts, so the rendered result is kept as immutable JSON text and decoded per app.
    gen = _Gen(seed)
    gen.build()
    views: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for version in VERSIONS:
        views[version] = {
            store: {sid: render(rec, version, base_path) for sid, rec in records.items()}
            for store, records in gen.stores.items()
            if not (version == V1P1 and store in V1P2_ONLY_STORES)
        }
    return json.dumps(views, ensure_ascii=False), frozenset(gen.no_account)


# ---------------------------------------------------------------------------------------------
# Synthetic users: many, generated on demand, never held in memory together.


def synthetic_id(index: int) -> str:
    return f"syn-user-{index:09d}"


def synthetic_index(sourced_id: str, count: int) -> int | None:
    prefix = "syn-user-"
    if not sourced_id.startswith(prefix) or not sourced_id[len(prefix) :].isdigit():
        return None
    index = int(sourced_id[len(prefix) :])
    return index if 0 <= index < count else None


def synthetic_user(
    index: int, version: str, org_ref: dict[str, str], padding: int
) -> dict[str, Any]:
    """One generated user, as cheap to make as a dict literal."""
    given = _GIVEN[index % len(_GIVEN)]
    family = _FAMILY[(index // len(_GIVEN)) % len(_FAMILY)]
    sid = synthetic_id(index)
    record: dict[str, Any] = {
        "sourcedId": sid,
        "status": "active",
        "dateLastModified": "2025-09-01T00:00:00.000Z",
        "username": f"user{index}",
        "enabledUser": "true",
        "givenName": given,
        "familyName": family,
        "identifier": f"SYN{index:09d}",
        "email": f"user{index}@synthetic.springfield.example",
        "agents": [],
        "grades": [f"{9 + index % 4:02d}"],
    }
    if version == V1P1:
        record["role"] = "student"
        record["orgs"] = [org_ref]
    else:
        record["roles"] = [{"roleType": "primary", "role": "student", "org": org_ref}]
        record["primaryOrg"] = org_ref
    if padding:
        record["metadata"] = {"padding": "x" * padding}
    return record
