"""Paging, filter, sort and fields at the sandbox district (OneRoster 1.1/1.2 §3.4)."""

from __future__ import annotations

import pytest

from proxy.sandbox.query import QueryError, parse_filter
from tests.sandbox.conftest import call, q
from tests.support import assert_imsx

USERS = "/ims/oneroster/v1p1/users"
USERS_12 = "/ims/oneroster/rostering/v1p2/users"


async def _users(sbx, http, query: str, path: str = USERS) -> list[dict]:
    answer = await call(http, sbx, f"{path}?{query}")
    assert answer.status == 200, answer.body
    return answer.json["users"]


async def test_paging_with_links_and_total(sbx, http):
    everyone = await _users(sbx, http, "limit=1000")
    total = len(everyone)
    answer = await call(http, sbx, f"{USERS}?limit=10&offset=20&sort=familyName")
    assert int(answer.headers["X-Total-Count"]) == total
    page = answer.json["users"]
    assert len(page) == 10
    links = {rel: str(link["url"]) for rel, link in _links(answer).items()}
    base = sbx.base_url + USERS
    assert links["next"] == f"{base}?sort=familyName&limit=10&offset=30"
    assert links["prev"] == f"{base}?sort=familyName&limit=10&offset=10"
    assert links["first"] == f"{base}?sort=familyName&limit=10&offset=0"
    assert links["last"] == f"{base}?sort=familyName&limit=10&offset={(total - 1) // 10 * 10}"
    # Walking next links visits everyone once.
    seen, path = [], f"{USERS}?limit=50"
    while path:
        answer = await call(http, sbx, path)
        seen += [u["sourcedId"] for u in answer.json["users"]]
        nxt = _links(answer).get("next")
        path = str(nxt["url"])[len(sbx.base_url) :] if nxt else ""
    assert seen == [u["sourcedId"] for u in everyone]


def _links(answer) -> dict:
    out = {}
    for part in answer.headers["Link"].split(", "):
        url, rel = part.split("; ")
        out[rel.split('"')[1]] = {"url": url.strip("<>")}
    return out


async def test_default_limit_is_100_and_first_page_has_no_prev(sbx, http):
    answer = await call(http, sbx, USERS)
    assert len(answer.json["users"]) == 100
    assert 'rel="next"' in answer.headers["Link"] and 'rel="prev"' not in answer.headers["Link"]


async def test_long_filter_is_kept_in_every_link(sbx, http):
    long_filter = "filter=" + q("familyName~'" + "a" * 500 + "' OR status='active'")
    answer = await call(http, sbx, f"{USERS}?{long_filter}&limit=5&offset=5")
    assert answer.status == 200
    assert answer.headers["Link"].count(long_filter) == 4  # next, prev, first, last
    assert len(answer.headers["Link"]) > 2000


@pytest.mark.parametrize("bad", ["limit=abc", "limit=0", "offset=-1", "orderBy=sideways"])
async def test_bad_paging_parameters_are_400(sbx, http, bad):
    answer = await call(http, sbx, f"{USERS}?{bad}")
    assert answer.status == 400
    assert_imsx(answer.json)


@pytest.mark.parametrize(
    ("expression", "check"),
    [
        ("role='teacher'", lambda u: u["role"] == "teacher"),
        ("role!='student'", lambda u: u["role"] != "student"),
        ("familyName>'S'", lambda u: u["familyName"] > "S"),
        ("familyName>='S'", lambda u: u["familyName"] >= "S"),
        ("familyName<'C'", lambda u: u["familyName"] < "C"),
        ("familyName<='Chen'", lambda u: u["familyName"] <= "Chen"),
        ("email~'SMITH'", lambda u: "smith" in u["email"]),
        ("dateLastModified>'2025-06-01'", lambda u: u["dateLastModified"] > "2025-06-01"),
        ("grades='09'", lambda u: "09" in u["grades"]),
        (
            "role='teacher' AND familyName~'o'",
            lambda u: u["role"] == "teacher" and "o" in u["familyName"].lower(),
        ),
        (
            "role='teacher' OR role='administrator'",
            lambda u: u["role"] in ("teacher", "administrator"),
        ),
        ("familyName='O'Brien'", lambda u: u["familyName"] == "O'Brien"),
        ("givenName='Zoë'", lambda u: u["givenName"] == "Zoë"),
        (
            "givenName='Zoë' AND familyName='O'Brien'",
            lambda u: (u["givenName"], u["familyName"]) == ("Zoë", "O'Brien"),
        ),
        ("email='nobody with spaces'", lambda u: False),
    ],
)
async def test_filters(sbx, http, expression, check):
    everyone = await _users(sbx, http, "limit=1000")
    expected = [u["sourcedId"] for u in everyone if check(u)]
    got = await _users(sbx, http, "limit=1000&filter=" + q(expression))
    assert [u["sourcedId"] for u in got] == expected
    if "Zoë" in expression or "O'Brien" in expression or "teacher" in expression:
        assert expected, "the sample data must hold a match"


async def test_filter_on_list_and_dotted_fields_in_1p2(sbx, http):
    students = await _users(sbx, http, "limit=1000&filter=" + q("roles.role='student'"), USERS_12)
    assert len(students) == 120
    school = students[0]["primaryOrg"]["sourcedId"]
    mine = await _users(
        sbx, http, "limit=1000&filter=" + q(f"primaryOrg.sourcedId='{school}'"), USERS_12
    )
    assert mine and all(u["primaryOrg"]["sourcedId"] == school for u in mine)
    also = await _users(sbx, http, "limit=1000&filter=" + q("roles='student'"), USERS_12)
    assert len(also) == 120


async def test_filter_with_plus_decoded_as_space(sbx, http):
    got = await _users(
        sbx, http, "filter=givenName%3D%27Zo%C3%AB%27+AND+familyName%3D%27O%27Brien%27"
    )
    assert [(u["givenName"], u["familyName"]) for u in got] == [("Zoë", "O'Brien")]


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("bogus", "invalid_filter_field"),
        ("givenName='a", "invalid_filter_field"),
        ("givenName=='a'", "invalid_filter_field"),
        ("shoeSize='9'", "invalid_filter_field"),
        ("givenName='a' XOR familyName='b'", "invalid_filter_field"),
    ],
)
async def test_bad_filters_are_400(sbx, http, expression, code):
    answer = await call(http, sbx, f"{USERS}?filter=" + q(expression))
    assert answer.status == 400
    assert_imsx(answer.json, code)


async def test_sort_and_order(sbx, http):
    asc = await _users(sbx, http, "limit=1000&sort=familyName")
    desc = await _users(sbx, http, "limit=1000&sort=familyName&orderBy=desc")
    names = [u["familyName"].casefold() for u in asc]
    assert names == sorted(names)
    assert [u["familyName"].casefold() for u in desc] == sorted(names, reverse=True)
    answer = await call(http, sbx, f"{USERS}?sort=shoeSize")
    assert answer.status == 400
    assert_imsx(answer.json, "invalid_sort_field")


async def test_fields_selection(sbx, http):
    users = await _users(sbx, http, "fields=sourcedId,givenName&limit=5")
    assert all(set(u) == {"sourcedId", "givenName"} for u in users)
    one = await call(http, sbx, f"{USERS}/{users[0]['sourcedId']}?fields=email")
    assert one.json == {"user": {"email": one.json["user"]["email"]}}
    answer = await call(http, sbx, f"{USERS}?fields=sourcedId,shoeSize")
    assert answer.status == 400
    assert_imsx(answer.json, "invalid_selection_field")


def test_parse_filter_grammar():
    flt = parse_filter("familyName='O'Brien' AND givenName~'Zo'")
    assert (flt.left.field, flt.left.op, flt.left.value) == ("familyName", "=", "O'Brien")
    assert flt.conjunction == "AND"
    assert (flt.right.field, flt.right.op, flt.right.value) == ("givenName", "~", "Zo")
    assert parse_filter("title='Tom AND Jerry'").right is None
    assert parse_filter("a>='1' OR b!='2'").conjunction == "OR"
    with pytest.raises(QueryError):
        parse_filter("a='1' AND b='2' AND c='3'")
