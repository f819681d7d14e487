"""Two switches that break one thing on purpose, over HTTP: ``no_student_accounts`` (on OneRoster
1.1 no student or parent has a user account, so none is visible there while 1.2 shows them all)
and ``versions`` (a district serving only 1.1 or only 1.2; the other version's paths answer the
imsx 404 of an unknown endpoint)."""

from __future__ import annotations

import base64
import urllib.parse

import aiohttp
import pytest
from oauthlib.oauth1 import Client
from yarl import URL

from proxy.sandbox import SandboxOptions
from proxy.sandbox.server import build_parser, options_from_args, run_sandbox_cli
from tests.sandbox.conftest import call, q
from tests.sandbox.test_cli import _start, _stop
from tests.support import assert_imsx

V11 = "/ims/oneroster/v1p1"
V12 = "/ims/oneroster/rostering/v1p2"


async def _total(http, sbx, path: str) -> int:
    answer = await call(http, sbx, path)
    assert answer.status == 200, (path, answer.body)
    return int(answer.headers["X-Total-Count"])


async def _roles(http, sbx, path: str) -> set[str]:
    answer = await call(http, sbx, path)
    assert answer.status == 200, (path, answer.body)
    roles = set()
    for user in answer.json["users"]:
        if "role" in user:
            roles.add(user["role"])
        else:
            roles.update(r["role"] for r in user["roles"])
    return roles


# -- no_student_accounts ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["infinite-campus", "default"])
async def test_no_student_accounts_hides_students_and_parents_on_1p1_only(
    make_sandbox, http, profile
):
    sbx = await make_sandbox(profile=profile, no_student_accounts=True)
    plain = await make_sandbox(profile=profile)

    assert await _total(http, sbx, f"{V11}/students?limit=1") == 0
    assert (await call(http, sbx, f"{V11}/students")).json["users"] == []
    # 1.2 is untouched: every student, as in a district without the switch.
    assert await _total(http, sbx, f"{V12}/students?limit=1") == 120
    assert await _total(http, plain, f"{V12}/students?limit=1") == 120
    # Where the profile alone hides 1 in 8 (Infinite Campus), the switch hides the rest too.
    before = await _total(http, plain, f"{V11}/students?limit=1")
    assert before == (105 if profile == "infinite-campus" else 120)

    # users: teachers and administrators remain, no student, parent or guardian.
    v11_roles = await _roles(http, sbx, f"{V11}/users?limit=1000")
    assert "teacher" in v11_roles
    assert not v11_roles & {"student", "parent", "guardian"}
    for role in ("student", "parent", "guardian"):
        flt = q(f"role='{role}'")
        assert await _total(http, sbx, f"{V11}/users?filter={flt}") == 0, role
        assert await _total(http, plain, f"{V11}/users?filter={flt}") > 0, role
    assert {"student", "parent", "guardian"} <= await _roles(http, sbx, f"{V12}/users?limit=1000")

    # Relationship endpoints that list students: empty on 1.1, full on 1.2.
    klass = (await call(http, sbx, f"{V11}/classes?limit=1")).json["classes"][0]["sourcedId"]
    school = (await call(http, sbx, f"{V11}/schools?limit=1")).json["orgs"][0]["sourcedId"]
    for tail in (f"classes/{klass}/students", f"schools/{school}/students",
                 f"schools/{school}/classes/{klass}/students"):  # fmt: skip
        assert await _total(http, sbx, f"{V11}/{tail}") == 0, tail
        assert await _total(http, sbx, f"{V12}/{tail}") > 0, tail
        assert await _total(http, plain, f"{V11}/{tail}") > 0, tail
    assert await _total(http, sbx, f"{V11}/classes/{klass}/teachers") > 0

    # A student read by id is unknown on 1.1 and there on 1.2.
    student = (await call(http, sbx, f"{V12}/students?limit=1")).json["users"][0]["sourcedId"]
    for path in (f"{V11}/students/{student}", f"{V11}/users/{student}"):
        answer = await call(http, sbx, path)
        assert answer.status == 404, path
        assert_imsx(answer.json, "unknownobject")
    assert (await call(http, sbx, f"{V12}/students/{student}")).status == 200


async def test_no_student_accounts_off_by_default(make_sandbox, http):
    sbx = await make_sandbox()
    assert sbx.options.no_student_accounts is False
    assert await _total(http, sbx, f"{V11}/students?limit=1") == 120


# -- versions ---------------------------------------------------------------------------------


async def test_both_versions_by_default(make_sandbox, http):
    sbx = await make_sandbox()
    assert sbx.options.versions == ("v1p1", "v1p2")
    assert (await call(http, sbx, f"{V11}/orgs")).status == 200
    assert (await call(http, sbx, f"{V12}/orgs")).status == 200


_V11_PATHS = (f"{V11}/orgs", f"{V11}/users?limit=1", f"{V11}/lineItems", f"{V11}/resources")
_V12_PATHS = (
    f"{V12}/orgs",
    f"{V12}/users?limit=1",
    "/ims/oneroster/gradebook/v1p2/lineItems",
    "/ims/oneroster/resources/v1p2/resources",
)


@pytest.mark.parametrize(
    ("versions", "served", "refused"),
    [(("1.1",), _V11_PATHS, _V12_PATHS), (("1.2",), _V12_PATHS, _V11_PATHS),
     (("v1p2",), _V12_PATHS, _V11_PATHS)],
    ids=["1.1-only", "1.2-only", "v1p2-spelling"],
)  # fmt: skip
async def test_one_version_only(make_sandbox, http, versions, served, refused):
    sbx = await make_sandbox(versions=versions)
    unknown = await call(http, sbx, "/ims/oneroster/v1p1/nosuchthing")
    assert unknown.status == 404
    for path in served:
        assert (await call(http, sbx, path)).status == 200, path
    for path in refused:
        answer = await call(http, sbx, path)
        assert answer.status == 404, path
        assert_imsx(answer.json, "unknownobject")
        # The very answer an unknown endpoint gets, bar the path it names.
        assert answer.json["imsx_description"].startswith("Unknown endpoint ")
        assert answer.headers["Content-Type"].startswith("application/json")
    # Signed and verified all the same: the 404 is about the path, not the credentials.
    assert sbx.recorded[-1].verified


async def test_version_only_oauth2_token_and_paths(make_sandbox, http):
    sbx = await make_sandbox(auth="oauth2", versions=("1.1",))
    form = urllib.parse.urlencode({"grant_type": "client_credentials"})
    pair = f"{urllib.parse.quote_plus(sbx.key)}:{urllib.parse.quote_plus(sbx.secret)}"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
    }
    async with http.post(sbx.token_url, data=form, headers=headers) as resp:
        assert resp.status == 200
        payload = await resp.json()
    # A 1.1-only district names its scopes in 1.1 URIs.
    assert "/spec/or/v1p1/scope/roster-core.readonly" in payload["scope"]
    bearer = {"Authorization": f"Bearer {payload['access_token']}"}
    ok = await call(http, sbx, f"{V11}/orgs", signed=False, headers=bearer)
    assert ok.status == 200
    missing = await call(http, sbx, f"{V12}/orgs", signed=False, headers=bearer)
    assert missing.status == 404
    assert_imsx(missing.json, "unknownobject")


@pytest.mark.parametrize("bad", [(), ("1.3",), ("1.1", "2.0"), "1.4"])
def test_bad_versions_are_refused(bad):
    with pytest.raises(ValueError, match="version"):
        SandboxOptions(versions=bad).resolved()


def test_a_bare_string_means_one_version():
    assert SandboxOptions(versions="1.2").resolved().versions == ("v1p2",)  # type: ignore[arg-type]
    assert SandboxOptions(versions=("1.2", "1.1", "v1p1")).resolved().versions == ("v1p1", "v1p2")


# -- the command line ---------------------------------------------------------------------------


def test_help_lists_both_switches():
    text = build_parser().format_help()
    for word in ("--no-student-accounts", "--versions", "user account", "1.1,1.2"):
        assert word in text, word


def test_cli_arguments_reach_the_options():
    parser = build_parser()
    options = options_from_args(parser.parse_args([]))
    assert options.no_student_accounts is False
    assert options.resolved().versions == ("v1p1", "v1p2")
    argv = ["--no-student-accounts", "--versions", "1.2", "--profile", "infinite-campus"]
    options = options_from_args(parser.parse_args(argv))
    assert options.no_student_accounts is True
    assert options.resolved().versions == ("v1p2",)
    assert options_from_args(parser.parse_args(["--versions", " 1.2 , 1.1 "])).versions == (
        "v1p1",
        "v1p2",
    )


@pytest.mark.parametrize("value", ["1.3", ",", "", "1.1;1.2"])
def test_cli_bad_versions_fail(value, capsys):
    with pytest.raises(SystemExit) as exc:
        run_sandbox_cli(["--versions", value])
    assert exc.value.code == 2
    assert "--versions" in capsys.readouterr().err


async def test_cli_switches_work_end_to_end():
    """The real command with both switches: 1.2 shows students, 1.1 is not there at all."""
    proc, printed = await _start("--versions", "1.2", "--no-student-accounts")
    try:
        client = Client(
            printed["key"], client_secret=printed["secret"], signature_method="HMAC-SHA256"
        )
        async with aiohttp.ClientSession() as http:
            for path, status in ((f"{V12}/students?limit=1", 200), (f"{V11}/students", 404)):
                signed_url, headers, _ = client.sign(printed["base_url"] + path)
                async with http.get(URL(signed_url, encoded=True), headers=headers) as resp:
                    assert resp.status == status, path
                    if status == 200:
                        assert resp.headers["X-Total-Count"] == "120"
    finally:
        assert await _stop(proc) == 0
