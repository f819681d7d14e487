"""OneRoster path + method -> the scopes that allow it (docs/configuration.md, scope table).

The table follows the scopes the OneRoster 1.2 OpenAPI files declare per operation (Rostering,
Gradebook and Resources Service REST/JSON bindings 1.2, §"Service Calls" / OAuth2 scopes), and
applies the same reading to the OneRoster 1.1 REST endpoints (1.1 §4, "Service calls"):

* rostering collection or single record (``users``, ``users/{id}``, ...), demographics excepted:
  ``roster-core.readonly`` or ``roster.readonly``;
* rostering relationship (``classes/{id}/students``, ``schools/{id}/classes/{id}/students``, ...):
  ``roster.readonly``;
* ``demographics``, ``demographics/{id}``: ``roster-demographics.readonly``;
* gradebook: GET ``gradebook.readonly``; PUT or POST ``gradebook.createput``; DELETE
  ``gradebook.delete`` (on every known gradebook path, as the contract words it per method);
* resources: GET ``resource.readonly``;
* anything else refused (empty scope set, the gateway answers 403).

Only the methods ``GET``, ``PUT``, ``POST`` and ``DELETE`` are known. ``HEAD`` and ``OPTIONS``
are refused like any other method: the contract says "any other method ... refused (403)", no
OneRoster binding defines them, and a district's answer to them is not something a scope was granted
for.
Method names are case-sensitive (RFC 9110 §9.1), so ``get`` is refused too.

Paths are matched exactly (case-sensitive) against the endpoint shapes of the specifications,
with any segment in an id position accepted as an id. Anything not in the table is refused, which
also keeps case-insensitive district servers (IIS) from being reached through ``Demographics``.

The table is built once at import; :func:`classify` costs a ``str.split`` and two dict look-ups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROSTER = "roster.readonly"
ROSTER_CORE = "roster-core.readonly"
ROSTER_DEMOGRAPHICS = "roster-demographics.readonly"
RESOURCE = "resource.readonly"
GRADEBOOK_READ = "gradebook.readonly"
GRADEBOOK_CREATEPUT = "gradebook.createput"
GRADEBOOK_DELETE = "gradebook.delete"

#: the documented order, for forms and listings (the console, the intake page).
SCOPE_ORDER: tuple[str, ...] = (
    ROSTER,
    ROSTER_CORE,
    ROSTER_DEMOGRAPHICS,
    RESOURCE,
    GRADEBOOK_READ,
    GRADEBOOK_CREATEPUT,
    GRADEBOOK_DELETE,
)
SCOPES: frozenset[str] = frozenset(SCOPE_ORDER)

SCOPE_URI_V1P2 = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
SCOPE_URI_V1P1 = "https://purl.imsglobal.org/spec/or/v1p1/scope/"

KNOWN_METHODS: frozenset[str] = frozenset({"GET", "PUT", "POST", "DELETE"})


def scope_uri(short: str, version: str = "v1p2") -> str:
    """The full scope URI sent to an OAuth2 district (``v1p1`` for a 1.1 district)."""
    if short not in SCOPES:
        raise ValueError(f"unknown scope {short!r}")
    if version == "v1p2":
        return SCOPE_URI_V1P2 + short
    if version == "v1p1":
        return SCOPE_URI_V1P1 + short
    raise ValueError(f"unknown OneRoster version {version!r}")


def parse_scope(value: str) -> str | None:
    """A short name, or a full ``.../v1p2/scope/...`` or ``.../v1p1/scope/...`` URI, to the short
    name; ``None`` for anything else (the caller reports ``invalid_scope`` / a config error)."""
    if value in SCOPES:
        return value
    for prefix in (SCOPE_URI_V1P2, SCOPE_URI_V1P1):
        if value.startswith(prefix):
            short = value[len(prefix) :]
            return short if short in SCOPES else None
    return None


@dataclass(frozen=True, slots=True)
class Route:
    """What the proxy needs to know about one OneRoster request path and method."""

    version: str  # "v1p1" or "v1p2"; "" when the path is under no OneRoster version prefix
    service: str  # "rostering" | "gradebook" | "resources"; "" when unknown
    resource: str  # metric label: last collection name, "other" if unknown; never an id
    scopes: frozenset[str]  # any one of these suffices; empty = refused (403)
    gradebook: bool  # SPEC "Gradebook endpoints": vendor authorization applies

    @property
    def allowed(self) -> bool:
        return bool(self.scopes)


_CORE = frozenset({ROSTER_CORE, ROSTER})
_RELATIONSHIP = frozenset({ROSTER})
_DEMOGRAPHICS = frozenset({ROSTER_DEMOGRAPHICS})
_NONE: frozenset[str] = frozenset()

_GRADEBOOK_BY_METHOD: dict[str, frozenset[str]] = {
    "GET": frozenset({GRADEBOOK_READ}),
    "PUT": frozenset({GRADEBOOK_CREATEPUT}),
    "POST": frozenset({GRADEBOOK_CREATEPUT}),
    "DELETE": frozenset({GRADEBOOK_DELETE}),
}
_RESOURCES_BY_METHOD: dict[str, frozenset[str]] = {"GET": frozenset({RESOURCE})}

# Endpoint shapes: collection names with "{}" where an id goes. Sources: OneRoster 1.2 Rostering,
# Gradebook and Resources REST bindings (every path of their OpenAPI files), OneRoster 1.1 §4.
_ROSTERING_V1P2 = (
    "academicSessions", "academicSessions/{}",
    "classes", "classes/{}", "classes/{}/students", "classes/{}/teachers",
    "courses", "courses/{}", "courses/{}/classes",
    "demographics", "demographics/{}",
    "enrollments", "enrollments/{}",
    "gradingPeriods", "gradingPeriods/{}",
    "orgs", "orgs/{}",
    "schools", "schools/{}", "schools/{}/classes", "schools/{}/classes/{}/enrollments",
    "schools/{}/classes/{}/students", "schools/{}/classes/{}/teachers", "schools/{}/courses",
    "schools/{}/enrollments", "schools/{}/students", "schools/{}/teachers", "schools/{}/terms",
    "students", "students/{}", "students/{}/classes",
    "teachers", "teachers/{}", "teachers/{}/classes",
    "terms", "terms/{}", "terms/{}/classes", "terms/{}/gradingPeriods",
    "users", "users/{}", "users/{}/classes",
)  # fmt: skip
# 1.1 has the same rostering endpoints as 1.2.
_ROSTERING_V1P1 = _ROSTERING_V1P2

_GRADEBOOK_V1P2 = (
    "assessmentLineItems", "assessmentLineItems/{}",
    "assessmentResults", "assessmentResults/{}",
    "categories", "categories/{}",
    "classes/{}/academicSessions/{}/results", "classes/{}/categories", "classes/{}/lineItems",
    "classes/{}/lineItems/{}/results", "classes/{}/results", "classes/{}/scoreScales",
    "classes/{}/students/{}/results",
    "lineItems", "lineItems/{}", "lineItems/{}/results",
    "results", "results/{}",
    "schools/{}/lineItems", "schools/{}/scoreScales",
    "scoreScales", "scoreScales/{}",
)  # fmt: skip
_GRADEBOOK_V1P1 = (
    "categories", "categories/{}",
    "lineItemCategories", "lineItemCategories/{}",  # gradebook, docs/configuration.md
    "classes/{}/lineItems", "classes/{}/lineItems/{}/results", "classes/{}/results",
    "classes/{}/students/{}/results",
    "lineItems", "lineItems/{}",
    "results", "results/{}",
)  # fmt: skip

_RESOURCES_V1P2 = (
    "resources", "resources/{}",
    "classes/{}/resources", "courses/{}/resources", "users/{}/resources",
)  # fmt: skip
_RESOURCES_V1P1 = ("resources", "resources/{}", "classes/{}/resources", "courses/{}/resources")

# docs/http-api.md: in 1.1, a path with one of these (collection) segments is a gradebook
# endpoint. An id that happens to read "results" does not make users/{id} a gradebook call.
_GRADEBOOK_SEGMENTS_V1P1 = frozenset({"lineItems", "lineItemCategories", "categories", "results"})

# (names of the collection segments, path ends with an id) -> {method: Route}; the "" method key
# holds the refusal Route for every other method.
_ShapeKey = tuple[tuple[str, ...], bool]
_Table = dict[_ShapeKey, dict[str, Route]]


def _shape_key(template: str) -> _ShapeKey:
    parts = template.split("/")
    return tuple(parts[0::2]), len(parts) % 2 == 0


def _rostering_scopes(template: str) -> frozenset[str]:
    names = template.split("/")[0::2]
    if names[0] == "demographics":
        return _DEMOGRAPHICS
    return _CORE if len(names) == 1 else _RELATIONSHIP


def _add(
    table: _Table,
    version: str,
    service: str,
    templates: Iterable[str],
    by_method: dict[str, frozenset[str]] | None,
) -> None:
    for template in templates:
        key = _shape_key(template)
        if key in table:
            raise AssertionError(f"duplicate endpoint {version} {template}")
        resource = key[0][-1]
        if version == "v1p2":
            gradebook = service == "gradebook"
        else:
            gradebook = any(name in _GRADEBOOK_SEGMENTS_V1P1 for name in key[0])
        scopes = by_method if by_method is not None else {"GET": _rostering_scopes(template)}
        routes = {m: Route(version, service, resource, s, gradebook) for m, s in scopes.items()}
        routes[""] = Route(version, service, resource, _NONE, gradebook)
        table[key] = routes


def _build() -> dict[str, _Table]:
    """One table per OneRoster prefix: "v1p1", "rostering/v1p2", "gradebook/v1p2", ..."""
    v1p1: _Table = {}
    _add(v1p1, "v1p1", "rostering", _ROSTERING_V1P1, None)
    _add(v1p1, "v1p1", "gradebook", _GRADEBOOK_V1P1, _GRADEBOOK_BY_METHOD)
    _add(v1p1, "v1p1", "resources", _RESOURCES_V1P1, _RESOURCES_BY_METHOD)
    rostering: _Table = {}
    _add(rostering, "v1p2", "rostering", _ROSTERING_V1P2, None)
    gradebook: _Table = {}
    _add(gradebook, "v1p2", "gradebook", _GRADEBOOK_V1P2, _GRADEBOOK_BY_METHOD)
    resources: _Table = {}
    _add(resources, "v1p2", "resources", _RESOURCES_V1P2, _RESOURCES_BY_METHOD)
    return {
        "v1p1": v1p1,
        "rostering/v1p2": rostering,
        "gradebook/v1p2": gradebook,
        "resources/v1p2": resources,
    }


_TABLES = _build()
_UNKNOWN = Route("", "", "other", _NONE, False)
_UNKNOWN_IN: dict[str, Route] = {
    "v1p1": Route("v1p1", "", "other", _NONE, False),
    "rostering/v1p2": Route("v1p2", "rostering", "other", _NONE, False),
    "gradebook/v1p2": Route("v1p2", "gradebook", "other", _NONE, True),
    "resources/v1p2": Route("v1p2", "resources", "other", _NONE, False),
}
_UNKNOWN_V1P1_GRADEBOOK = Route("v1p1", "gradebook", "other", _NONE, True)


def endpoint_templates() -> dict[str, tuple[str, ...]]:
    """Every endpoint shape in the table, per prefix (for ``check``, the sandbox and tests)."""
    return {
        "v1p1": _ROSTERING_V1P1 + _GRADEBOOK_V1P1 + _RESOURCES_V1P1,
        "rostering/v1p2": _ROSTERING_V1P2,
        "gradebook/v1p2": _GRADEBOOK_V1P2,
        "resources/v1p2": _RESOURCES_V1P2,
    }


def classify(rest: str, method: str) -> Route:
    """The Route of ``rest`` (the decoded path after ``/ims/oneroster/``, checked by
    :func:`proxy.gateway.paths.parse_target`) for ``method``. Unknown paths or methods get a Route
    with no scopes; the gateway refuses those with 403 before any upstream request.

    One trailing slash is accepted (``v1p1/users/`` is the users collection); every other empty
    segment makes the path unknown.
    """
    if "//" in rest:  # an empty segment is never an id (paths.py refuses it with 400 first)
        return _UNKNOWN
    segments = rest.split("/")
    if segments[-1] == "" and len(segments) > 1:
        segments.pop()
    first = segments[0]
    if first == "v1p1":
        prefix, start = "v1p1", 1
    elif len(segments) > 1 and segments[1] == "v1p2":
        prefix, start = first + "/v1p2", 2
    else:
        return _UNKNOWN
    table = _TABLES.get(prefix)
    if table is None:
        return _UNKNOWN
    body = segments[start:]
    names = tuple(body[0::2])
    routes = table.get((names, len(body) % 2 == 0)) if body else None
    if routes is None:
        if prefix == "v1p1" and any(n in _GRADEBOOK_SEGMENTS_V1P1 for n in names):
            return _UNKNOWN_V1P1_GRADEBOOK
        return _UNKNOWN_IN[prefix]
    # HEAD is GET without the body (RFC 9110 §9.3.2): the same resource, the same scope.
    route = routes.get("GET" if method == "HEAD" else method)
    return route if route is not None else routes[""]


#: Path collections whose records are of another kind (``classes/{id}/students`` gives users):
#: the record kind a ``drop_fields`` entry and the access ledger name (docs/configuration.md).
PATH_KIND = {
    "students": "users",
    "teachers": "users",
    "schools": "orgs",
    "terms": "academicSessions",
    "gradingPeriods": "academicSessions",
}


def _readable() -> dict[str, frozenset[str]]:
    """Each collection name a read (GET) can give, with the scopes that allow one."""
    out: dict[str, set[str]] = {}
    for table in _TABLES.values():
        for routes in table.values():
            get = routes.get("GET")
            if get is None or not get.scopes:
                continue
            for name in (get.resource, PATH_KIND.get(get.resource, get.resource)):
                out.setdefault(name, set()).update(get.scopes)
    return {name: frozenset(s) for name, s in out.items()}


#: Collection name -> the scopes under which a vendor can read records of it.
READABLE: dict[str, frozenset[str]] = _readable()


def drop_field_problem(entry: object, scopes: frozenset[str] | None) -> str | None:
    """Why ``entry`` is not a usable ``drop_fields`` entry (``<collection>.<field>`` or
    ``*.<field>``) for a connection sharing ``scopes`` (None: do not judge scopes), or None."""
    if not isinstance(entry, str):
        return 'must be a string such as "users.phone"'
    collection, dot, name = entry.partition(".")
    if not dot:
        return f'"{entry}": write <collection>.<field>, such as "users.phone" or "*.metadata"'
    if not name.strip() or name != name.strip() or "." in name:
        return f'"{entry}": the field name is empty or not a top-level field'
    if collection == "*":
        return None
    if collection not in READABLE:
        return f'"{entry}": unknown collection "{collection}"'
    if scopes is not None and not READABLE[collection] & scopes:
        return (
            f'"{entry}": this connection\'s scopes never give {collection} '
            f"(needs one of {', '.join(sorted(READABLE[collection]))})"
        )
    return None
