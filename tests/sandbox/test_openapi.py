"""The sandbox against the official OneRoster 1.2 OpenAPI files (docs/sandbox.md:
vendors integrate against it, so its answers must validate against the operations' response
schemas of the Rostering, Gradebook and Resources REST bindings published by 1EdTech).

Those files are not part of this repository (they are 1EdTech's). The walk reads them from a
directory when one is there: ``$ORP_ONEROSTER_OPENAPI_DIR``, else ``../shared/oneroster-openapi/``
beside the repository; each ``*.json`` / ``*.yaml`` in it is an OpenAPI document whose first
server URL, its ``{variables}`` replaced by their defaults (1EdTech publishes
``https://{hostName}{basePath}``), ends with ``/ims/oneroster/<service>/v1p2``. Without all three
the walk fails when ``CI`` is set (CI lays them beside the clone) and skips elsewhere, saying where
it looked. Every GET operation is called on a real sandbox with ids taken from the sandbox's own
answers (the collection before each ``{id}``, resolved in the operation's service or in
rostering; for a relationship collection, parents in turn until one has records), and each 200
body is validated against the operation's 200 schema, formats included (``uri``, ``date``,
``date-time``).

The checks below the walk are our own, in our own words, and always run: the shape rules the
walk found the sandbox breaking, so CI keeps them fixed without the official files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client

REPO = Path(__file__).resolve().parents[2]
ENV = "ORP_ONEROSTER_OPENAPI_DIR"
# Records validated per collection operation: enough to meet every kind the sample data has.
PAGE = 1000
# Parents tried for a relationship collection before its empty answer is taken as the one.
TRIES = 40
SERVICES = ("rostering", "gradebook", "resources")
SERVICE_URL = re.compile(r"/ims/oneroster/(rostering|gradebook|resources)/v1p2/?$")


def spec_dir() -> Path:
    configured = os.environ.get(ENV)
    return Path(configured) if configured else REPO.parent / "shared" / "oneroster-openapi"


def load_specs(directory: Path) -> dict[str, dict[str, Any]]:
    """service ("rostering", "gradebook", "resources") -> OpenAPI document."""
    specs: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.suffix not in (".json", ".yaml", ".yml"):
            continue
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        match = SERVICE_URL.search(server_url(doc))
        if match:
            specs[match.group(1)] = doc
    return specs


def server_url(doc: dict[str, Any]) -> str:
    """The first server's URL with its ``{variables}`` replaced by their defaults (OpenAPI 3.0
    §4.7.5 Server Object: 1EdTech publishes ``https://{hostName}{basePath}``)."""
    server = (doc.get("servers") or [{}])[0]
    variables = server.get("variables") or {}

    def value(match: re.Match[str]) -> str:
        variable = variables.get(match.group(1)) or {}
        return str(variable.get("default", match.group(0)))

    return re.sub(r"\{([^{}]+)\}", value, str(server.get("url", "")))


class Sandbox:
    """A running sandbox and an OAuth1 client for it (the sandbox verifies signatures itself)."""

    def __init__(self, running: Any, http: aiohttp.ClientSession) -> None:
        self.running = running
        self.http = http
        self.client = Client(
            running.key, client_secret=running.secret, signature_method=SIGNATURE_HMAC_SHA256
        )
        self.root = running.base_url + "/ims/oneroster/"

    async def get(self, rest: str) -> tuple[int, Any]:
        url, headers, _ = self.client.sign(self.root + rest)
        async with self.http.get(url, headers=headers) as resp:
            body = await resp.read()
            return resp.status, json.loads(body) if body else None


@pytest.fixture
async def district() -> AsyncIterator[Sandbox]:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    running = await start_sandbox(SandboxOptions())
    async with aiohttp.ClientSession() as http:
        yield Sandbox(running, http)
    await running.close()


def _records(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, list):
                return [v for v in value if isinstance(v, dict)]
    return []


async def fill(sandbox: Sandbox, service: str, template: str, pick: int = 0) -> str | None:
    """``template`` (``/schools/{schoolSourcedId}/classes/{classSourcedId}/students``) with each
    id the first record of the collection before it (the last id the ``pick``-th record), or
    None when there is no such record."""
    segments = template.strip("/").split("/")
    last = max((i for i, s in enumerate(segments) if s.startswith("{")), default=-1)
    done: list[str] = []
    for index, segment in enumerate(segments):
        if not (segment.startswith("{") and segment.endswith("}")):
            done.append(segment)
            continue
        collection = "/".join(done)
        offset = pick if index == last else 0
        sourced_id = None
        for prefix in dict.fromkeys((f"{service}/v1p2", "rostering/v1p2")):
            status, body = await sandbox.get(f"{prefix}/{collection}?limit=1&offset={offset}")
            records = _records(body) if status == 200 else []
            if records:
                sourced_id = records[0].get("sourcedId")
                break
        if not sourced_id:
            return None
        done.append(sourced_id)
    return "/".join(done)


async def answer(sandbox: Sandbox, service: str, template: str) -> tuple[str | None, int, Any]:
    """(the path called, its status, its body). A relationship collection
    (``/users/{userSourcedId}/classes``) is asked for one parent after another until an answer
    has records, so the schema meets records and not only an empty list."""
    single = template.rstrip("/").endswith("}")
    query = "" if single else f"?limit={PAGE}"
    found: tuple[str | None, int, Any] = (None, 0, None)
    for pick in range(1 if single or "{" not in template else TRIES):
        rest = await fill(sandbox, service, template, pick)
        if rest is None:
            break
        status, body = await sandbox.get(f"{service}/v1p2/{rest}{query}")
        found = (rest, status, body)
        if status != 200 or single or _records(body):
            break
    return found


def validator_for(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    from jsonschema import FormatChecker
    from openapi_schema_validator import OAS30Validator, OAS31Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    cls = OAS31Validator if str(doc.get("openapi", "")).startswith("3.1") else OAS30Validator
    registry: Registry = Registry().with_resource(
        "urn:oneroster", Resource(contents=doc, specification=DRAFT202012)
    )
    root = {**schema}
    if "$ref" in root:
        root = {"$ref": "urn:oneroster" + root["$ref"]}
    return cls(root, registry=_rebased(registry, doc), format_checker=FormatChecker())


def _rebased(registry: Any, doc: dict[str, Any]) -> Any:
    # Refs inside the document are "#/components/..."; resolve them against the document itself.
    from referencing import Resource
    from referencing.jsonschema import DRAFT202012

    return registry.with_resource("", Resource(contents=doc, specification=DRAFT202012))


async def walk(sandbox: Sandbox, specs: dict[str, dict[str, Any]]) -> tuple[int, list[str]]:
    """(GET operations walked, one line per failing operation)."""
    failures: list[str] = []
    count = 0
    for service, doc in sorted(specs.items()):
        for template, item in doc["paths"].items():
            operation = item.get("get")
            if operation is None:
                continue
            count += 1
            name = f"{service} GET {template} ({operation.get('operationId', '?')})"
            schema = (
                operation.get("responses", {})
                .get("200", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema")
            )
            rest, status, body = await answer(sandbox, service, template)
            if rest is None:
                failures.append(f"{name}: no id to fill it with (an empty collection)")
                continue
            if status != 200:
                failures.append(f"{name}: HTTP {status}")
                continue
            if schema is None:
                continue
            errors = sorted(validator_for(doc, schema).iter_errors(body), key=lambda e: e.path)
            if errors:
                kinds = sorted({e.message for e in errors})
                first = errors[0]
                where = "/".join(str(p) for p in first.absolute_path)
                failures.append(
                    f"{name}: {len(errors)} error(s), first at /{where}; "
                    f"kinds: {' | '.join(kinds)[:600]}"
                )
    return count, failures


def missing_specs_message(directory: Path) -> str:
    return (
        f"the official OneRoster 1.2 OpenAPI files are not here: set ${ENV} or put them in "
        f"{directory} (they are 1EdTech's and not shipped with this repository)"
    )


async def test_every_get_of_the_official_openapi_files_validates(district: Sandbox) -> None:
    directory = spec_dir()
    specs = load_specs(directory)
    if set(specs) != set(SERVICES):
        message = missing_specs_message(directory)
        if specs:
            message += f"; found only {', '.join(sorted(specs))}"
        if os.environ.get("CI"):
            # CI has them beside the clone: a walk that skips there checks nothing.
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    count, failures = await walk(district, specs)
    print(f"{count} GET operations of {', '.join(sorted(specs))}; {len(failures)} failing")
    assert count == sum(
        1 for doc in specs.values() for item in doc["paths"].values() if "get" in item
    )
    assert failures == [], "\n".join(failures)


def test_the_published_server_url_resolves_to_its_service(tmp_path: Path) -> None:
    # 1EdTech publishes the server as a template whose variables' defaults name the service
    # (OpenAPI 3.0 Server Object); a literal URL is read as it is.
    for service in SERVICES:
        doc = {
            "openapi": "3.0.0",
            "paths": {},
            "servers": [
                {
                    "url": "https://{hostName}{basePath}",
                    "variables": {
                        "hostName": {"default": "www.imsglobal.org"},
                        "basePath": {
                            "enum": [f"/ims/oneroster/{service}/v1p2"],
                            "default": f"/ims/oneroster/{service}/v1p2",
                        },
                    },
                }
            ],
        }
        (tmp_path / f"{service}.json").write_text(json.dumps(doc))
    (tmp_path / "literal.yaml").write_text(
        "openapi: 3.0.0\npaths: {}\nservers:\n"
        "  - url: https://example.org/ims/oneroster/rostering/v1p2\n"
    )
    specs = load_specs(tmp_path)
    assert set(specs) == set(SERVICES)
    assert (
        server_url(specs["gradebook"]) == "https://www.imsglobal.org/ims/oneroster/gradebook/v1p2"
    )


async def test_without_the_files_the_walk_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "nowhere"))
    for ci, outcome in (("true", pytest.fail.Exception), (None, pytest.skip.Exception)):
        if ci:
            monkeypatch.setenv("CI", ci)
        else:
            monkeypatch.delenv("CI", raising=False)
        with pytest.raises(outcome, match="OpenAPI files are not here"):
            await test_every_get_of_the_official_openapi_files_validates(None)  # type: ignore[arg-type]


# -- our own shape checks, always run -----------------------------------------------------------

_COMMON = {"sourcedId", "status", "dateLastModified", "metadata"}
_SESSION = _COMMON | {"title", "startDate", "endDate", "type", "parent", "children", "schoolYear"}
_ORG = _COMMON | {"name", "type", "identifier", "parent", "children"}
_USER = _COMMON | set(
    "userMasterIdentifier username userIds enabledUser givenName familyName middleName "
    "preferredFirstName preferredMiddleName preferredLastName pronouns roles userProfiles "
    "primaryOrg identifier email sms phone agents grades password resources".split()
)
#: The properties a OneRoster 1.2 rostering record may carry, per collection: the 1.2 JSON
#: binding closes every record type (no additional properties), so a property of another
#: version or of our own making would break a strict client.
ALLOWED_V1P2: dict[str, set[str]] = {
    "academicSessions": _SESSION,
    "terms": _SESSION,
    "gradingPeriods": _SESSION,
    "classes": _COMMON
    | set(
        "title classCode classType location grades subjects course school terms subjectCodes "
        "periods resources".split()
    ),
    "courses": _COMMON
    | set("title schoolYear courseCode grades subjects org subjectCodes resources".split()),
    "demographics": _COMMON
    | set(
        "birthDate sex americanIndianOrAlaskaNative asian blackOrAfricanAmerican "
        "nativeHawaiianOrOtherPacificIslander white demographicRaceTwoOrMoreRaces "
        "hispanicOrLatinoEthnicity countryOfBirthCode stateOfBirthAbbreviation cityOfBirth "
        "publicSchoolResidenceStatus".split()
    ),
    "enrollments": _COMMON | {"user", "class", "school", "role", "primary", "beginDate", "endDate"},
    "orgs": _ORG,
    "schools": _ORG,
    "users": _USER,
    "students": _USER,
    "teachers": _USER,
}
_GUIDREF_KEYS = {"href", "sourcedId", "type"}


def _guidrefs(value: Any) -> list[dict[str, Any]]:
    """Every GUIDRef-shaped object (one with a ``type`` and a ``sourcedId``) inside ``value``."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if "sourcedId" in value and "type" in value and "href" in value:
            found.append(value)
        for item in value.values():
            found += _guidrefs(item)
    elif isinstance(value, list):
        for item in value:
            found += _guidrefs(item)
    return found


async def test_v1p2_rostering_records_carry_only_the_bindings_properties(
    district: Sandbox,
) -> None:
    for collection, allowed in ALLOWED_V1P2.items():
        status, body = await district.get(f"rostering/v1p2/{collection}?limit={PAGE}")
        assert status == 200, collection
        records = _records(body)
        assert records, collection
        for record in records:
            extra = set(record) - allowed
            assert not extra, f"{collection}/{record['sourcedId']}: not in 1.2: {sorted(extra)}"
            for ref in _guidrefs({k: v for k, v in record.items() if k != "sourcedId"}):
                assert set(ref) == _GUIDREF_KEYS, (collection, ref)
                assert re.match(r"^https?://[^/]+/", ref["href"]), (collection, ref)
