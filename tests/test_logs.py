"""Logs of a real ``oneroster-proxy serve`` process (docs/commands.md ``serve``): one structured
line per request and per operator action, ``--log-format text`` for humans, and never a token, key,
secret or query value: the test greps the whole log of a realistic session for every secret
the session used, and for the student name it filtered on.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio

from proxy.sandbox import SandboxOptions
from proxy.sandbox.server import start_sandbox
from tests.cli.test_tokens import run_cli, token_id
from tests.serve.test_server import ProxyProcess, issue_token, status_of
from tests.support import (
    ACME_CLIENT_SECRET,
    ACME_VENDOR_AUTH,
    ADMIN_TOKEN,
    JWT_KEY,
    auth,
    base_config,
)

ACCESS_FIELDS = {
    "time",
    "request_id",
    "vendor",
    "app",
    "district",
    "method",
    "path",
    "status",
    "upstream_status",
    "duration_ms",
    "bytes",
}
WRONG_ADMIN_TOKEN = "wrong-admin-token-9f8e7d6c5b4a"
WRONG_CLIENT_SECRET = "wrong-client-secret-1a2b3c4d5e"


def upstream_credentials(sandbox: Any) -> list[str]:
    """Every Authorization value the proxy sent the district, and each OAuth1 signature."""
    found = []
    for rec in sandbox.recorded:
        for value in rec.header("Authorization"):
            found.append(value)
            found += re.findall(r'oauth_signature="([^"]+)"', value)
            if value.startswith("Bearer "):
                found.append(value[7:])
    return found


@dataclass
class Session:
    """What one realistic session left: the serve process's log (text and JSON records), the
    CLI's log lines, and every secret the session used, by label."""

    text: str
    records: list[dict[str, Any]]
    cli_records: list[dict[str, Any]]
    secrets: dict[str, str]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    """A realistic session against a real ``serve`` process, run once for the focused tests
    below: tokens by the CLI (another process, same store) and the admin API, vendor requests
    filtering on a student's name (1.1 and 1.2), OAuth2 inbound and an OAuth2 district, refused
    credentials, reloads by signal and by the admin API, then SIGTERM."""
    tmp_path = tmp_path_factory.mktemp("logs")
    sandbox = await start_sandbox(SandboxOptions())
    campus = await start_sandbox(SandboxOptions(auth="oauth2"))
    proc: ProxyProcess | None = None
    http = aiohttp.ClientSession()
    try:
        doc = base_config(tmp_path, sandbox)
        doc["districts"]["campus"] = {
            "base_url": campus.base_url,
            "auth": "oauth2",
            "token_url": campus.token_url,
        }
        doc["connections"]["app-9"] = dict(
            doc["connections"]["app-7"], district="campus", key=campus.key, secret=campus.secret
        )
        proc = await ProxyProcess(tmp_path, doc).start()
        cfg = str(proc.config_path)
        cli_err: list[str] = []

        # Tokens: CLI (another process, same store) and admin API.
        code, out, err = await run_cli(
            "tokens", "issue", "acme", "--config", cfg, "--log-format", "json"
        )
        assert code == 0
        cli_issued = out.strip().splitlines()[-1]
        cli_err.append(err)
        admin_issued = await issue_token(proc, http)
        other = await issue_token(proc, http, "other")
        async with http.post(
            f"{proc.admin_url}/admin/vendors/acme/tokens/rotate",
            json={"grace": "1h"},
            headers=auth(ADMIN_TOKEN),
        ) as resp:
            assert resp.status == 201
            rotated = (await resp.json())["token"]
        code, _, err = await run_cli(
            "tokens", "revoke", token_id(cli_issued), "--config", cfg, "--log-format", "json"
        )
        assert code == 0
        cli_err.append(err)
        async with http.get(
            f"{proc.admin_url}/admin/vendors/acme/tokens", headers=auth(WRONG_ADMIN_TOKEN)
        ) as resp:
            assert resp.status == 401
        async with http.get(
            f"{proc.admin_url}/admin/connections", headers=auth(ADMIN_TOKEN)
        ) as resp:
            assert resp.status == 200

        # A student's name, then a filter on it (1.1 and 1.2), as vendors do.
        async with http.get(proc.app_url("v1p1/students?limit=1"), headers=auth(rotated)) as resp:
            student = (await resp.json())["users"][0]
        name = student["familyName"]
        assert len(name) >= 4
        filt = quote(f"familyName='{name}'", safe="")
        async with http.get(
            proc.app_url(f"v1p1/users?filter={filt}&limit=5"),
            headers={**auth(rotated), "X-Request-Id": "log-test-1"},
        ) as resp:
            assert resp.status == 200
            assert any(u["familyName"] == name for u in (await resp.json())["users"])
        async with http.get(
            proc.app_url(f"rostering/v1p2/users?filter={filt}&sort=givenName"),
            headers=auth(admin_issued),
        ) as resp:
            assert resp.status == 200
        async with http.get(
            proc.app_url(f"v1p1/users?{quote(name)}"), headers=auth(admin_issued)
        ) as resp:
            await resp.read()  # a bare query value, no name=

        # OAuth2 inbound: a JWT by Basic, a refused secret, then the JWT on the gateway and
        # on the OAuth2 district (whose upstream token the proxy fetches).
        basic = base64.b64encode(f"acme:{ACME_CLIENT_SECRET}".encode()).decode()
        async with http.post(
            f"{proc.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        ) as resp:
            assert resp.status == 200
            jwt_token = (await resp.json())["access_token"]
        async with http.post(
            f"{proc.url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "acme",
                "client_secret": WRONG_CLIENT_SECRET,
            },
        ) as resp:
            assert resp.status == 401
        assert await status_of(http, proc.app_url(f"v1p1/users?filter={filt}"), jwt_token) == 200
        assert await status_of(http, proc.app_url("v1p1/orgs", app="app-9"), jwt_token) == 200
        assert (
            await status_of(http, proc.app_url("gradebook/v1p2/lineItems", app="app-9"), rotated)
            == 200
        )
        assert await status_of(http, proc.app_url("v1p1/orgs", app="app-8"), other) == 200
        # Refusals carrying credentials of their own.
        forged = f"orp_{token_id(rotated)}_{'A' * 43}"
        assert await status_of(http, proc.app_url("v1p1/orgs"), forged) == 401
        assert await status_of(http, proc.app_url("v1p1/orgs"), cli_issued) in (200, 401)
        async with http.get(f"{proc.url}/applications", headers=auth(jwt_token)) as resp:
            assert resp.status == 200

        # Reloads: by signal, and by the admin API with a broken file.
        proc.send(signal.SIGHUP)
        await proc.wait_for_log('"interface": "signal"')
        good = proc.config_path.read_text()
        broken = copy.deepcopy(doc)
        broken["connections"]["app-7"]["scopes"] = ["gradebook.write"]
        proc.write(broken)
        async with http.post(f"{proc.admin_url}/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
            assert resp.status == 400
        proc.config_path.write_text(good)

        proc.send(signal.SIGTERM)
        assert await proc.wait(15) == 0

        text = proc.text() + "".join(cli_err)
        records = proc.records()
        assert len(records) == len(proc.text().splitlines()), "every line is one JSON object"
        cli_records = [json.loads(ln) for ln in "".join(cli_err).splitlines()]
        secrets = {
            "student name": name,
            "admin token": ADMIN_TOKEN,
            "wrong admin token": WRONG_ADMIN_TOKEN,
            "client secret": ACME_CLIENT_SECRET,
            "wrong client secret": WRONG_CLIENT_SECRET,
            "jwt key": JWT_KEY,
            "jwt": jwt_token,
            "jwt signature": jwt_token.rsplit(".", 1)[1],
            "district key": sandbox.key,
            "district secret": sandbox.secret,
            "oauth2 district key": campus.key,
            "oauth2 district secret": campus.secret,
            "vendor authorization": ACME_VENDOR_AUTH,
            "forged token": forged,
        }
        for label, token in (
            ("cli token", cli_issued),
            ("admin token issued", admin_issued),
            ("other token", other),
            ("rotated token", rotated),
        ):
            secrets[label] = token
            secrets[label + " secret"] = token.split("_", 2)[2]
        for i, value in enumerate(upstream_credentials(sandbox) + upstream_credentials(campus)):
            secrets[f"upstream credential {i}"] = value
        assert any(k.startswith("upstream credential") for k in secrets)
        yield Session(text, records, cli_records, secrets)
    finally:
        await http.close()
        if proc is not None:
            await proc.stop()
        await campus.close()
        await sandbox.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_one_access_line_per_request_with_the_documented_fields(session: Session) -> None:
    records = session.records
    access = [r for r in records if r.get("logger") == "oneroster_proxy.access"]
    assert len(access) >= 12
    for r in access:
        assert ACCESS_FIELDS <= set(r), r
        assert "?" not in r["path"]
    line = next(r for r in access if r["request_id"] == "log-test-1")
    assert line["vendor"] == "acme" and line["app"] == "app-7"
    assert line["district"] == "springfield" and line["method"] == "GET"
    assert line["path"] == "/app-7/ims/oneroster/v1p1/users"
    assert line["query_params"] == ["filter", "limit"]
    assert line["status"] == 200 and line["upstream_status"] == 200
    assert line["bytes"] > 0 and line["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert any(r["app"] == "app-9" and r["district"] == "campus" for r in access)
    assert any(r["status"] == 401 and r["vendor"] == "-" for r in access)


@pytest.mark.asyncio(loop_scope="module")
async def test_one_line_per_operator_action_from_every_interface(session: Session) -> None:
    records = session.records
    events = [(r.get("event"), r.get("interface")) for r in records]
    for wanted in (
        ("token.issue", "admin"),
        ("token.rotate", "admin"),
        ("config.reload", "signal"),
        ("config.reload", "admin"),
    ):
        assert wanted in events, wanted
    assert any(r.get("event") == "admin.request" and r["status"] == 401 for r in records)
    assert [(r["event"], r["interface"]) for r in session.cli_records] == [
        ("token.issue", "cli"),
        ("token.revoke", "cli"),
    ]


@pytest.mark.asyncio(loop_scope="module")
async def test_no_secret_the_session_used_is_in_any_log(session: Session) -> None:
    assert any(k.startswith("upstream credential") for k in session.secrets)
    for label, secret in session.secrets.items():
        assert secret and secret not in session.text, f"{label} found in the log"


async def test_text_format(sandbox, tmp_path, http):
    proc = await ProxyProcess(tmp_path, base_config(tmp_path, sandbox), log_format="text").start()
    try:
        token = await issue_token(proc, http)
        async with http.get(
            proc.app_url("v1p1/users?filter=givenName%3D%27Zebulon%27"),
            headers={**auth(token), "X-Request-Id": "text-1"},
        ) as resp:
            assert resp.status == 200
        proc.send(signal.SIGHUP)
        await proc.wait_for_log("config reloaded")
        proc.send(signal.SIGTERM)
        assert await proc.wait(10) == 0
        text = proc.text()
        assert not any(line.startswith("{") for line in text.splitlines())
        line = next(ln for ln in text.splitlines() if "request_id=text-1" in ln)
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info +request ", line)
        for part in (
            "vendor=acme",
            "app=app-7",
            "district=springfield",
            "method=GET",
            "path=/app-7/ims/oneroster/v1p1/users",
            "status=200",
            "upstream_status=200",
            "query_params=filter",
        ):
            assert part in line.split(), part
        assert "event=token.issue" in text and "interface=admin" in text
        assert "event=config.reload" in text and "interface=signal" in text
        for secret in (
            token,
            token.split("_", 2)[2],
            ADMIN_TOKEN,
            "Zebulon",
            JWT_KEY,
            sandbox.key,
            sandbox.secret,
        ):
            assert secret not in text
    finally:
        await proc.stop()


async def test_scrub_removes_credentials_from_free_text():
    from proxy.logs import query_names, scrub

    token = "orp_abcdefghijkl_" + "S" * 43
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl"
    message = (
        f"failed GET http://d.example/x?filter=familyName%3D%27Smith%27 with "
        f"Authorization: Bearer {token} and {jwt_like}; client_secret=hunter2; "
        f"token seen: {token}"
    )
    cleaned = scrub(message)
    for leaked in ("Smith", token, "S" * 43, jwt_like, "hunter2"):
        assert leaked not in cleaned
    assert "orp_abcdefghijkl_[redacted]" in cleaned  # the id stays, to find the token
    assert query_names("filter=x&limit=5&Jane%20Doe&&sort=a") == ["?", "filter", "limit", "sort"]


async def test_no_log_line_prints_a_urls_userinfo(capsys):
    """In a message, a field or a traceback, text or JSON: ``user:pass@`` of any URL goes."""
    import logging

    from proxy.logs import scrub, setup_logging

    assert (
        scrub("to https://sis:hunter2@d.example/api/x") == "to https://[redacted]@d.example/api/x"
    )
    assert scrub("URL('redis://:pw-9x@127.0.0.1:6379/0')") == (
        "URL('redis://[redacted]@127.0.0.1:6379/0')"
    )
    log = logging.getLogger("oneroster_proxy")
    for fmt in ("json", "text"):
        setup_logging(fmt)
        try:
            raise ValueError("cannot reach https://sis:hunter2@d.example/api")
        except ValueError:
            log.exception(
                "request to http://u:hunter2@d.example failed",
                extra={"fields": {"url": "https://sis:hunter2@d.example/"}},
            )
        err = capsys.readouterr().err
        assert "d.example" in err and "Traceback" in err.replace("\\n", "\n")
        assert "hunter2" not in err and "sis:" not in err
