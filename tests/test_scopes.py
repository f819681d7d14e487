"""proxy.scopes against the OneRoster 1.2 and 1.1 endpoint lists (scope table,
docs/configuration.md)."""

from __future__ import annotations

import re

import pytest

from proxy import scopes
from proxy.scopes import Route, classify, parse_scope, scope_uri

CORE = frozenset({"roster-core.readonly", "roster.readonly"})
REL = frozenset({"roster.readonly"})
DEMO = frozenset({"roster-demographics.readonly"})
GB_READ = frozenset({"gradebook.readonly"})
GB_PUT = frozenset({"gradebook.createput"})
GB_DEL = frozenset({"gradebook.delete"})
RES = frozenset({"resource.readonly"})

# Every operation of the OneRoster 1.2 OpenAPI files (1EdTech, "OneRoster 1.2 Rostering / Gradebook
# (incl. Assessment Results profile) / Resources Service REST/JSON Binding", Final Release,
# 19 Sept 2022: imsorv1p2_{rostering,gradebook,resources}_openapi3_v1p0.json), as operationId,
# method, path template. The list was taken from a public transcription of those files' paths
# (the REST-binding operation registries of a OneRoster TypeScript client, found with the code
# search), cross-checked with the 1EdTech binding pages. The last column is the scope the
# operation's `security` block declares, read per the scope table (docs/configuration.md):
# getAll*/get<one> -> roster-core or roster; get*For* relationships -> roster; demographics ->
# roster-demographics;
# gradebook GET/PUT+POST/DELETE -> readonly/createput/delete; resources -> resource.readonly.
ROSTERING_V1P2 = [
    ("getAllAcademicSessions", "GET", "/academicSessions", CORE),
    ("getAcademicSession", "GET", "/academicSessions/{sourcedId}", CORE),
    ("getAllClasses", "GET", "/classes", CORE),
    ("getStudentsForClass", "GET", "/classes/{classSourcedId}/students", REL),
    ("getTeachersForClass", "GET", "/classes/{classSourcedId}/teachers", REL),
    ("getClass", "GET", "/classes/{sourcedId}", CORE),
    ("getAllCourses", "GET", "/courses", CORE),
    ("getClassesForCourse", "GET", "/courses/{courseSourcedId}/classes", REL),
    ("getCourse", "GET", "/courses/{sourcedId}", CORE),
    ("getAllDemographics", "GET", "/demographics", DEMO),
    ("getDemographics", "GET", "/demographics/{sourcedId}", DEMO),
    ("getAllEnrollments", "GET", "/enrollments", CORE),
    ("getEnrollment", "GET", "/enrollments/{sourcedId}", CORE),
    ("getAllGradingPeriods", "GET", "/gradingPeriods", CORE),
    ("getGradingPeriod", "GET", "/gradingPeriods/{sourcedId}", CORE),
    ("getAllOrgs", "GET", "/orgs", CORE),
    ("getOrg", "GET", "/orgs/{sourcedId}", CORE),
    ("getAllSchools", "GET", "/schools", CORE),
    ("getClassesForSchool", "GET", "/schools/{schoolSourcedId}/classes", REL),
    (
        "getEnrollmentsForClassInSchool",
        "GET",
        "/schools/{schoolSourcedId}/classes/{classSourcedId}/enrollments",
        REL,
    ),
    (
        "getStudentsForClassInSchool",
        "GET",
        "/schools/{schoolSourcedId}/classes/{classSourcedId}/students",
        REL,
    ),
    (
        "getTeachersForClassInSchool",
        "GET",
        "/schools/{schoolSourcedId}/classes/{classSourcedId}/teachers",
        REL,
    ),
    ("getCoursesForSchool", "GET", "/schools/{schoolSourcedId}/courses", REL),
    ("getEnrollmentsForSchool", "GET", "/schools/{schoolSourcedId}/enrollments", REL),
    ("getStudentsForSchool", "GET", "/schools/{schoolSourcedId}/students", REL),
    ("getTeachersForSchool", "GET", "/schools/{schoolSourcedId}/teachers", REL),
    ("getTermsForSchool", "GET", "/schools/{schoolSourcedId}/terms", REL),
    ("getSchool", "GET", "/schools/{sourcedId}", CORE),
    ("getAllStudents", "GET", "/students", CORE),
    ("getStudent", "GET", "/students/{sourcedId}", CORE),
    ("getClassesForStudent", "GET", "/students/{studentSourcedId}/classes", REL),
    ("getAllTeachers", "GET", "/teachers", CORE),
    ("getTeacher", "GET", "/teachers/{sourcedId}", CORE),
    ("getClassesForTeacher", "GET", "/teachers/{teacherSourcedId}/classes", REL),
    ("getAllTerms", "GET", "/terms", CORE),
    ("getTerm", "GET", "/terms/{sourcedId}", CORE),
    ("getClassesForTerm", "GET", "/terms/{termSourcedId}/classes", REL),
    ("getGradingPeriodsForTerm", "GET", "/terms/{termSourcedId}/gradingPeriods", REL),
    ("getAllUsers", "GET", "/users", CORE),
    ("getUser", "GET", "/users/{sourcedId}", CORE),
    ("getClassesForUser", "GET", "/users/{userSourcedId}/classes", REL),
]

GRADEBOOK_V1P2 = [
    ("getAllAssessmentLineItems", "GET", "/assessmentLineItems", GB_READ),
    ("getAssessmentLineItem", "GET", "/assessmentLineItems/{sourcedId}", GB_READ),
    ("deleteAssessmentLineItem", "DELETE", "/assessmentLineItems/{sourcedId}", GB_DEL),
    ("putAssessmentLineItem", "PUT", "/assessmentLineItems/{sourcedId}", GB_PUT),
    ("getAllAssessmentResults", "GET", "/assessmentResults", GB_READ),
    ("getAssessmentResult", "GET", "/assessmentResults/{sourcedId}", GB_READ),
    ("deleteAssessmentResult", "DELETE", "/assessmentResults/{sourcedId}", GB_DEL),
    ("putAssessmentResult", "PUT", "/assessmentResults/{sourcedId}", GB_PUT),
    ("getAllCategories", "GET", "/categories", GB_READ),
    ("getCategory", "GET", "/categories/{sourcedId}", GB_READ),
    ("deleteCategory", "DELETE", "/categories/{sourcedId}", GB_DEL),
    ("putCategory", "PUT", "/categories/{sourcedId}", GB_PUT),
    (
        "postResultsForAcademicSessionForClass",
        "POST",
        "/classes/{classSourcedId}/academicSessions/{academicSessionSourcedId}/results",
        GB_PUT,
    ),
    ("getCategoriesForClass", "GET", "/classes/{classSourcedId}/categories", GB_READ),
    ("getLineItemsForClass", "GET", "/classes/{classSourcedId}/lineItems", GB_READ),
    ("postLineItemsForClass", "POST", "/classes/{classSourcedId}/lineItems", GB_PUT),
    (
        "getResultsForLineItemForClass",
        "GET",
        "/classes/{classSourcedId}/lineItems/{lineItemSourcedId}/results",
        GB_READ,
    ),
    ("getResultsForClass", "GET", "/classes/{classSourcedId}/results", GB_READ),
    ("getScoreScalesForClass", "GET", "/classes/{classSourcedId}/scoreScales", GB_READ),
    (
        "getResultsForStudentForClass",
        "GET",
        "/classes/{classSourcedId}/students/{studentSourcedId}/results",
        GB_READ,
    ),
    ("getAllLineItems", "GET", "/lineItems", GB_READ),
    ("postResultsForLineItem", "POST", "/lineItems/{lineItemSourcedId}/results", GB_PUT),
    ("getLineItem", "GET", "/lineItems/{sourcedId}", GB_READ),
    ("deleteLineItem", "DELETE", "/lineItems/{sourcedId}", GB_DEL),
    ("putLineItem", "PUT", "/lineItems/{sourcedId}", GB_PUT),
    ("getAllResults", "GET", "/results", GB_READ),
    ("getResult", "GET", "/results/{sourcedId}", GB_READ),
    ("deleteResult", "DELETE", "/results/{sourcedId}", GB_DEL),
    ("putResult", "PUT", "/results/{sourcedId}", GB_PUT),
    ("postLineItemsForSchool", "POST", "/schools/{schoolSourcedId}/lineItems", GB_PUT),
    ("getScoreScalesForSchool", "GET", "/schools/{schoolSourcedId}/scoreScales", GB_READ),
    ("getAllScoreScales", "GET", "/scoreScales", GB_READ),
    ("getScoreScale", "GET", "/scoreScales/{sourcedId}", GB_READ),
    ("deleteScoreScale", "DELETE", "/scoreScales/{sourcedId}", GB_DEL),
    ("putScoreScale", "PUT", "/scoreScales/{sourcedId}", GB_PUT),
]

RESOURCES_V1P2 = [
    ("getResourcesForClass", "GET", "/classes/{classSourcedId}/resources", RES),
    ("getResourcesForCourse", "GET", "/courses/{courseSourcedId}/resources", RES),
    ("getAllResources", "GET", "/resources", RES),
    ("getResource", "GET", "/resources/{sourcedId}", RES),
    ("getResourcesForUser", "GET", "/users/{userSourcedId}/resources", RES),
]

# OneRoster 1.1 (IMS Final Release, "OneRoster: Specification" v1.1 §4 service calls, base
# /ims/oneroster/v1p1): the rostering calls equal 1.2's; the gradebook and resources ones follow.
ROSTERING_V1P1 = ROSTERING_V1P2
GRADEBOOK_V1P1 = [
    ("getAllCategories", "GET", "/categories", GB_READ),
    ("getCategory", "GET", "/categories/{id}", GB_READ),
    ("deleteCategory", "DELETE", "/categories/{id}", GB_DEL),
    ("putCategory", "PUT", "/categories/{id}", GB_PUT),
    ("getAllLineItems", "GET", "/lineItems", GB_READ),
    ("getLineItem", "GET", "/lineItems/{id}", GB_READ),
    ("deleteLineItem", "DELETE", "/lineItems/{id}", GB_DEL),
    ("putLineItem", "PUT", "/lineItems/{id}", GB_PUT),
    ("getAllResults", "GET", "/results", GB_READ),
    ("getResult", "GET", "/results/{id}", GB_READ),
    ("deleteResult", "DELETE", "/results/{id}", GB_DEL),
    ("putResult", "PUT", "/results/{id}", GB_PUT),
    ("getResultsForClass", "GET", "/classes/{class_id}/results", GB_READ),
    ("getLineItemsForClass", "GET", "/classes/{class_id}/lineItems", GB_READ),
    (
        "getResultsForLineItemForClass",
        "GET",
        "/classes/{class_id}/lineItems/{li_id}/results",
        GB_READ,
    ),
    (
        "getResultsForStudentForClass",
        "GET",
        "/classes/{class_id}/students/{student_id}/results",
        GB_READ,
    ),
]
RESOURCES_V1P1 = [
    ("getAllResources", "GET", "/resources", RES),
    ("getResource", "GET", "/resources/{id}", RES),
    ("getResourcesForClass", "GET", "/classes/{class_id}/resources", RES),
    ("getResourcesForCourse", "GET", "/courses/{course_id}/resources", RES),
]

PREFIXES = {
    "rostering/v1p2": ROSTERING_V1P2,
    "gradebook/v1p2": GRADEBOOK_V1P2,
    "resources/v1p2": RESOURCES_V1P2,
}
V1P1 = ROSTERING_V1P1 + GRADEBOOK_V1P1 + RESOURCES_V1P1

# Ids chosen to look like collection names, methods and traps: classification must ignore them.
IDS = ["abc-123", "users", "demographics", "lineItems", "results", "x.y~z", "0", "GET"]


def fill(template: str, id_: str) -> str:
    return re.sub(r"\{[^}]+\}", id_, template).lstrip("/")


def _all_cases():
    for prefix, ops in PREFIXES.items():
        for op_id, method, template, expected in ops:
            yield pytest.param(prefix, "v1p2", method, template, expected, id=f"{prefix}:{op_id}")
    for op_id, method, template, expected in V1P1:
        yield pytest.param("v1p1", "v1p1", method, template, expected, id=f"v1p1:{op_id}")


@pytest.mark.parametrize(
    ("prefix", "version", "method", "template", "expected"), list(_all_cases())
)
def test_every_operation_needs_its_declared_scope(prefix, version, method, template, expected):
    for id_ in IDS:
        rest = f"{prefix}/{fill(template, id_)}"
        route = classify(rest, method)
        assert route.scopes == expected, rest
        assert route.version == version
        # ids never become the metric label: it is the last collection segment
        last_collection = [p for p in template.split("/") if p and not p.startswith("{")][-1]
        assert route.resource == last_collection
        assert classify(rest + "/", method) == route  # one trailing slash is the same endpoint


def test_service_and_gradebook_flag_v1p2():
    for prefix, ops in PREFIXES.items():
        service = prefix.split("/")[0]
        for _, method, template, _ in ops:
            route = classify(f"{prefix}/{fill(template, 'x')}", method)
            assert route.service == service
            # docs/http-api.md: every path under gradebook/v1p2/ is a gradebook endpoint,
            # nothing else in 1.2
            assert route.gradebook is (service == "gradebook")


def test_gradebook_flag_v1p1_follows_segments():
    gradebook_names = {"lineItems", "lineItemCategories", "categories", "results"}
    for _, method, template, _ in V1P1:
        route = classify(f"v1p1/{fill(template, 'x')}", method)
        names = {p for p in template.split("/") if p and not p.startswith("{")}
        assert route.gradebook is bool(names & gradebook_names), template
    # an id spelled like a gradebook collection does not make a roster call a gradebook one
    assert classify("v1p1/users/results", "GET").gradebook is False
    assert classify("v1p1/lineItemCategories/c1", "PUT").scopes == GB_PUT
    assert classify("v1p1/lineItemCategories/c1", "PUT").gradebook is True


def test_spec_examples():
    assert classify("v1p1/users", "GET").scopes == CORE
    assert classify("v1p1/classes/abc/students", "GET").scopes == REL
    assert classify("rostering/v1p2/schools/x/classes", "GET").scopes == REL
    assert classify("rostering/v1p2/terms/t/gradingPeriods", "GET").scopes == REL
    assert classify("rostering/v1p2/schools/s/classes/c/students", "GET").resource == "students"
    assert classify("gradebook/v1p2/classes/c1/lineItems", "GET").scopes == GB_READ
    assert classify("gradebook/v1p2/schools/s/scoreScales", "GET").scopes == GB_READ
    assert classify("resources/v1p2/classes/c1/resources", "GET").scopes == RES
    assert classify("v1p1/classes/c1/resources", "GET").scopes == RES
    assert classify("v1p1/demographics/d1", "GET").scopes == DEMO


@pytest.mark.parametrize("prefix", ["gradebook/v1p2", "v1p1"])
def test_gradebook_scope_follows_method(prefix):
    # the contract words gradebook scopes per method, for any gradebook endpoint.
    table = GRADEBOOK_V1P2 if prefix == "gradebook/v1p2" else GRADEBOOK_V1P1
    for _, _, template, _ in table:
        rest = f"{prefix}/{fill(template, 'x')}"
        assert classify(rest, "GET").scopes == GB_READ
        assert classify(rest, "PUT").scopes == GB_PUT
        assert classify(rest, "POST").scopes == GB_PUT
        assert classify(rest, "DELETE").scopes == GB_DEL


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH", "OPTIONS", "get", ""])
def test_other_methods_on_rostering_and_resources_are_refused(method):
    for prefix, ops in (("rostering/v1p2", ROSTERING_V1P2), ("resources/v1p2", RESOURCES_V1P2)):
        for _, _, template, _ in ops:
            route = classify(f"{prefix}/{fill(template, 'x')}", method)
            assert route.scopes == frozenset()
            assert route.resource != "other"  # still a bounded, meaningful label


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "TRACE", "CONNECT", "put"])
def test_unknown_methods_on_gradebook_are_refused(method):
    assert classify("gradebook/v1p2/lineItems/x", method).scopes == frozenset()
    assert classify("v1p1/results/x", method).scopes == frozenset()


@pytest.mark.parametrize(
    "rest",
    [
        "",
        "v1p1",
        "v1p1/",
        "v1p2/users",  # 1.2 has a service prefix
        "rostering/v1p1/users",
        "rostering/v1p2",
        "rostering/v1p2/",
        "rostering/v1p2/lineItems",  # a gradebook collection under the rostering service
        "gradebook/v1p2/users",
        "resources/v1p2/users",
        "resources/v1p2/classes/c1",
        "grading/v1p2/lineItems",
        "v1p1/Users",  # case-sensitive: IIS would serve it, so it must not pass unclassified
        "v1p1/DEMOGRAPHICS",
        "v1p1/userss",
        "v1p1/users/u1/u2",
        "v1p1/users/u1/demographics",
        "v1p1/classes/c1/students/s1",
        "v1p1/classes/c1/students/s1/classes",
        "v1p1/scoreScales",  # 1.2 only
        "v1p1/users//u1",
        "v1p1//users",
        "v1p1/users//",
        "rostering/v1p2/discovery/imsorv1p2_rostering_openapi3_v1p0.json",
        "v1p1/users/u1/resources",
        "v1p1/classes/c1/categories",
        "gradebook/v1p2/schools/s1/lineItems/l1",
        "v1p2",
        "ims/oneroster/v1p1/users",
    ],
)
def test_unknown_paths_are_refused(rest):
    for method in ("GET", "PUT", "POST", "DELETE"):
        route = classify(rest, method)
        assert route.scopes == frozenset(), (rest, method)
        assert route.resource == "other"


def test_unknown_route_fields():
    assert classify("foo/bar", "GET") == Route("", "", "other", frozenset(), False)
    unknown_gradebook = classify("gradebook/v1p2/nope", "GET")
    assert (unknown_gradebook.version, unknown_gradebook.service) == ("v1p2", "gradebook")
    assert unknown_gradebook.gradebook is True
    assert classify("v1p1/nope/x/results", "GET").gradebook is True
    assert classify("v1p1/nope", "GET").version == "v1p1"


def test_resource_label_is_bounded():
    labels = set()
    for prefix, ops in [*PREFIXES.items(), ("v1p1", V1P1)]:
        for _, method, template, _ in ops:
            for id_ in ("u-1", "9f8e7d", "zzz"):
                labels.add(classify(f"{prefix}/{fill(template, id_)}", method).resource)
    labels.add(classify("v1p1/whatever/else", "GET").resource)
    assert "other" in labels
    assert not labels & {"u-1", "9f8e7d", "zzz"}
    assert len(labels) <= 30


def test_table_covers_exactly_the_spec_lists():
    def shapes(ops):
        return {re.sub(r"\{[^}]+\}", "{}", t).lstrip("/") for _, _, t, _ in ops}

    templates = scopes.endpoint_templates()
    assert set(templates["rostering/v1p2"]) == shapes(ROSTERING_V1P2)
    assert set(templates["gradebook/v1p2"]) == shapes(GRADEBOOK_V1P2)
    assert set(templates["resources/v1p2"]) == shapes(RESOURCES_V1P2)
    extra_v1p1 = {"lineItemCategories", "lineItemCategories/{}"}  # docs/configuration.md, gradebook
    assert set(templates["v1p1"]) == shapes(V1P1) | extra_v1p1


def test_scope_names_and_uris():
    assert scopes.SCOPES == {
        "roster.readonly",
        "roster-core.readonly",
        "roster-demographics.readonly",
        "resource.readonly",
        "gradebook.readonly",
        "gradebook.createput",
        "gradebook.delete",
    }
    assert scope_uri("roster.readonly") == (
        "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly"
    )
    assert scope_uri("gradebook.delete", "v1p1") == (
        "https://purl.imsglobal.org/spec/or/v1p1/scope/gradebook.delete"
    )
    with pytest.raises(ValueError):
        scope_uri("gradebook.write")
    with pytest.raises(ValueError):
        scope_uri("roster.readonly", "v1p3")
    for short in scopes.SCOPES:
        assert parse_scope(short) == short
        assert parse_scope(scope_uri(short)) == short
        assert parse_scope(scope_uri(short, "v1p1")) == short
    for bad in (
        "gradebook.write",
        "",
        "ROSTER.READONLY",
        "http://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly",
        "https://purl.imsglobal.org/spec/or/v1p3/scope/roster.readonly",
        "https://purl.imsglobal.org/spec/or/v1p2/scope/",
        "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly ",
    ):
        assert parse_scope(bad) is None, bad
