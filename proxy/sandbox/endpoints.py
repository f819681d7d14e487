"""Every endpoint the sandbox district serves, and the scope each one needs.

The endpoint lists follow the OneRoster 1.1 REST binding (``/ims/oneroster/v1p1/...``) and the
OneRoster 1.2 OpenAPI files of the rostering, gradebook and resources services
(``/ims/oneroster/{rostering,gradebook,resources}/v1p2/...``); the scope of each request follows
the scope table (docs/configuration.md). This is the sandbox's own small table, kept apart from the
proxy's ``proxy.scopes`` on purpose: the sandbox checks the proxy, so the two must not share a
mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

ID = "*"

#: Endpoint collection -> (storage collection, wrapper key of a list, wrapper key of one record).
COLLECTIONS: dict[str, tuple[str, str, str]] = {
    "academicSessions": ("academicSessions", "academicSessions", "academicSession"),
    "terms": ("academicSessions", "academicSessions", "academicSession"),
    "gradingPeriods": ("academicSessions", "academicSessions", "academicSession"),
    "classes": ("classes", "classes", "class"),
    "courses": ("courses", "courses", "course"),
    "demographics": ("demographics", "demographics", "demographics"),
    "enrollments": ("enrollments", "enrollments", "enrollment"),
    "orgs": ("orgs", "orgs", "org"),
    "schools": ("orgs", "orgs", "org"),
    "users": ("users", "users", "user"),
    "students": ("users", "users", "user"),
    "teachers": ("users", "users", "user"),
    "categories": ("categories", "categories", "category"),
    # Some 1.1 districts name the categories collection lineItemCategories (the contract lists
    # both).
    "lineItemCategories": ("categories", "categories", "category"),
    "lineItems": ("lineItems", "lineItems", "lineItem"),
    "results": ("results", "results", "result"),
    "scoreScales": ("scoreScales", "scoreScales", "scoreScale"),
    "assessmentLineItems": ("assessmentLineItems", "assessmentLineItems", "assessmentLineItem"),
    "assessmentResults": ("assessmentResults", "assessmentResults", "assessmentResult"),
    "resources": ("resources", "resources", "resource"),
}


@dataclass(frozen=True)
class Endpoint:
    """One path template of one service.

    ``pattern`` holds literal segments and ``ID`` placeholders; ``result`` is the endpoint
    collection whose records it returns (``students`` for ``classes/{id}/students``);
    ``methods`` maps each allowed method to its action.
    """

    service: str  # rostering | gradebook | resources
    pattern: tuple[str, ...]
    result: str
    methods: tuple[tuple[str, str], ...]

    @property
    def kind(self) -> str:
        if len(self.pattern) == 1:
            return "collection"
        if len(self.pattern) == 2 and self.pattern[1] == ID:
            return "record"
        return "relation"

    @property
    def name(self) -> str:
        return "/".join("{id}" if s == ID else s for s in self.pattern)

    def action(self, method: str) -> str | None:
        return dict(self.methods).get(method)

    @property
    def allowed(self) -> list[str]:
        return [m for m, _ in self.methods]

    def match(self, segments: list[str]) -> list[str] | None:
        """The ids in ``segments`` if they fit the pattern, else None."""
        if len(segments) != len(self.pattern):
            return None
        ids = []
        for literal, segment in zip(self.pattern, segments, strict=True):
            if literal == ID:
                if not segment:
                    return None
                ids.append(segment)
            elif literal != segment:
                return None
        return ids


_GET = (("GET", "list"),)
_RECORD = (("GET", "get"),)
_WRITABLE = (("GET", "get"), ("PUT", "put"), ("DELETE", "delete"))


def _rel(
    service: str, path: str, result: str, methods: tuple[tuple[str, str], ...] = _GET
) -> Endpoint:
    pattern = tuple(ID if s.startswith("{") else s for s in path.split("/"))
    return Endpoint(service, pattern, result, methods)


def _collections(service: str, names: list[str], writable: bool = False) -> list[Endpoint]:
    out = []
    for name in names:
        out.append(_rel(service, name, name))
        out.append(_rel(service, f"{name}/{{id}}", name, _WRITABLE if writable else _RECORD))
    return out


_ROSTERING_NAMES = [
    "academicSessions", "classes", "courses", "demographics", "enrollments", "gradingPeriods",
    "orgs", "schools", "students", "teachers", "terms", "users",
]  # fmt: skip

_ROSTERING_RELATIONS = [
    ("classes/{id}/students", "students"),
    ("classes/{id}/teachers", "teachers"),
    ("courses/{id}/classes", "classes"),
    ("schools/{id}/classes", "classes"),
    ("schools/{id}/courses", "courses"),
    ("schools/{id}/enrollments", "enrollments"),
    ("schools/{id}/students", "students"),
    ("schools/{id}/teachers", "teachers"),
    ("schools/{id}/terms", "terms"),
    ("schools/{id}/classes/{id}/enrollments", "enrollments"),
    ("schools/{id}/classes/{id}/students", "students"),
    ("schools/{id}/classes/{id}/teachers", "teachers"),
    ("students/{id}/classes", "classes"),
    ("teachers/{id}/classes", "classes"),
    ("terms/{id}/classes", "classes"),
    ("terms/{id}/gradingPeriods", "gradingPeriods"),
    ("users/{id}/classes", "classes"),
]


def _rostering() -> list[Endpoint]:
    return _collections("rostering", _ROSTERING_NAMES) + [
        _rel("rostering", path, result) for path, result in _ROSTERING_RELATIONS
    ]


def _v1p1() -> list[Endpoint]:
    gradebook = _collections(
        "gradebook", ["categories", "lineItemCategories", "lineItems", "results"], writable=True
    )
    gradebook += [
        _rel("gradebook", "classes/{id}/lineItems", "lineItems"),
        _rel("gradebook", "classes/{id}/results", "results"),
        _rel("gradebook", "classes/{id}/lineItems/{id}/results", "results"),
        _rel("gradebook", "classes/{id}/students/{id}/results", "results"),
    ]
    resources = [
        *_collections("resources", ["resources"]),
        _rel("resources", "classes/{id}/resources", "resources"),
        _rel("resources", "courses/{id}/resources", "resources"),
    ]
    return _rostering() + gradebook + resources


def _v1p2_gradebook() -> list[Endpoint]:
    names = [
        "categories", "lineItems", "results", "scoreScales", "assessmentLineItems",
        "assessmentResults",
    ]  # fmt: skip
    read_and_post = (("GET", "list"), ("POST", "post"))
    post_only = (("POST", "post"),)
    return [
        *_collections("gradebook", names, writable=True),
        _rel("gradebook", "classes/{id}/categories", "categories"),
        _rel("gradebook", "classes/{id}/lineItems", "lineItems", read_and_post),
        _rel("gradebook", "classes/{id}/results", "results"),
        _rel("gradebook", "classes/{id}/lineItems/{id}/results", "results"),
        _rel("gradebook", "classes/{id}/students/{id}/results", "results"),
        _rel("gradebook", "classes/{id}/scoreScales", "scoreScales"),
        _rel("gradebook", "classes/{id}/academicSessions/{id}/results", "results", post_only),
        _rel("gradebook", "lineItems/{id}/results", "results", post_only),
        _rel("gradebook", "schools/{id}/lineItems", "lineItems", read_and_post),
        _rel("gradebook", "schools/{id}/scoreScales", "scoreScales"),
    ]


def _v1p2_resources() -> list[Endpoint]:
    return [
        *_collections("resources", ["resources"]),
        _rel("resources", "classes/{id}/resources", "resources"),
        _rel("resources", "courses/{id}/resources", "resources"),
        _rel("resources", "users/{id}/resources", "resources"),
    ]


#: API root (segments after ``/ims/oneroster/``) -> (version, endpoints).
API_ROOTS: dict[tuple[str, ...], tuple[str, list[Endpoint]]] = {
    ("v1p1",): ("v1p1", _v1p1()),
    ("rostering", "v1p2"): ("v1p2", _rostering()),
    ("gradebook", "v1p2"): ("v1p2", _v1p2_gradebook()),
    ("resources", "v1p2"): ("v1p2", _v1p2_resources()),
}


@dataclass(frozen=True)
class Match:
    version: str
    endpoint: Endpoint
    ids: list[str]


def match(segments: list[str]) -> tuple[str, Match | None]:
    """Find the endpoint for the segments after ``/ims/oneroster/``.

    Returns the version (``""`` for an unknown API root) and the match, if any.
    """
    for root, (version, endpoints) in API_ROOTS.items():
        if tuple(segments[: len(root)]) == root:
            rest = segments[len(root) :]
            for endpoint in endpoints:
                ids = endpoint.match(rest)
                if ids is not None:
                    return version, Match(version, endpoint, ids)
            return version, None
    return "", None


def required_scopes(endpoint: Endpoint, method: str) -> frozenset[str]:
    """The scopes of which a request needs one (scope table, docs/configuration.md); empty:
    refused."""
    if endpoint.service == "rostering":
        if method != "GET":
            return frozenset()
        if endpoint.pattern[0] == "demographics":
            return frozenset({"roster-demographics.readonly"})
        if endpoint.kind == "relation":
            return frozenset({"roster.readonly"})
        return frozenset({"roster-core.readonly", "roster.readonly"})
    if endpoint.service == "gradebook":
        return {
            "GET": frozenset({"gradebook.readonly"}),
            "PUT": frozenset({"gradebook.createput"}),
            "POST": frozenset({"gradebook.createput"}),
            "DELETE": frozenset({"gradebook.delete"}),
        }.get(method, frozenset())
    if endpoint.service == "resources" and method == "GET":
        return frozenset({"resource.readonly"})
    return frozenset()


def is_gradebook_path(segments: list[str]) -> bool:
    """Gradebook endpoints (docs/sandbox.md), where Infinite Campus wants the vendor header."""
    if segments[:2] == ["gradebook", "v1p2"]:
        return True
    special = {"lineItems", "lineItemCategories", "categories", "results"}
    if segments[:1] == ["v1p1"]:
        return any(s in special for s in segments[1:])
    if len(segments) >= 2 and segments[1] == "v1p2":
        return any(
            s in ("scoreScales", "assessmentLineItems", "assessmentResults") for s in segments[2:]
        )
    return False
