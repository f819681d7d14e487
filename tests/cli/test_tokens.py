"""Token lifecycle through the real ``oneroster-proxy tokens`` CLI, against a running proxy that
shares its sqlite store (docs/commands.md).

Every CLI call is a subprocess: what an operator types, in another process than the proxy, so
revocation and rotation must reach the running proxy through the store within ``cache_ttl``
(1 s in these tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import SteppedClock, auth, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN_RE = re.compile(r"^orp_([a-z0-9]{12})_([A-Za-z0-9_-]{43,})$")
LISTING_FIELDS = {"id", "vendor", "prefix", "created", "expires", "last_used"}
CACHE_TTL = 1.0


async def run_cli(*args: str, limit: float = 30) -> tuple[int, str, str]:
    """``oneroster-proxy ARGS`` in a subprocess; (exit code, stdout, stderr)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from proxy.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), limit)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def cli_token(*args: str) -> str:
    """Run a token-issuing command; its token is the last line of stdout."""
    code, out, err = await run_cli(*args)
    assert code == 0, err
    token = out.rstrip("\n").splitlines()[-1]
    assert TOKEN_RE.match(token), out
    assert token not in err
    return token


def token_id(token: str) -> str:
    match = TOKEN_RE.match(token)
    assert match
    return match.group(1)


async def status_of(http: aiohttp.ClientSession, url: str, token: str) -> int:
    async with http.get(url, headers=auth(token)) as resp:
        await resp.read()
        return resp.status


async def wait_for_status(
    http: aiohttp.ClientSession, url: str, token: str, want: int, within: float
) -> float:
    """Poll until ``token`` gets ``want``; the seconds it took. Fails after ``within``."""
    started = time.monotonic()
    while True:
        got = await status_of(http, url, token)
        elapsed = time.monotonic() - started
        if got == want:
            return elapsed
        assert elapsed < within, f"still {got} after {elapsed:.2f}s, wanted {want}"
        await asyncio.sleep(0.05)


async def list_json(config: Path, *vendor: str) -> list[dict[str, Any]]:
    code, out, err = await run_cli("tokens", "list", *vendor, "--config", str(config), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


async def test_issue_prints_token_last_and_it_works_at_once(proxy, http):
    cfg = str(proxy.config_path)
    url = proxy.app_url("v1p1/orgs")
    # The proxy judges expiry by this clock: the test moves it, however slow the CLI was.
    clock = proxy.services.authenticator.clock = SteppedClock()
    token, ttl_token = await asyncio.gather(
        cli_token("tokens", "issue", "acme", "--config", cfg),
        cli_token("tokens", "issue", "acme", "--config", cfg, "--ttl", "3s"),
    )
    record = await proxy.services.store.get_token(token_id(ttl_token))
    assert record.expires is not None
    assert 2.9 <= (record.expires - record.created).total_seconds() <= 3.1
    clock.set_wall(record.created)
    # The running proxy never saw these ids: the very first request must already pass.
    assert await status_of(http, url, token) == 200
    assert await status_of(http, url, ttl_token) == 200
    # A token is its vendor's only: acme's token does not open another vendor's app.
    assert await status_of(http, proxy.app_url("v1p1/orgs", app="app-8"), token) == 404

    rows = {r["id"]: r for r in await list_json(proxy.config_path)}
    assert rows[token_id(token)]["expires"] is None
    assert rows[token_id(ttl_token)]["expires"] is not None

    # --ttl 3s: works until the expiry, 401 right after it (the cached record carries it).
    clock.set_wall(record.expires - timedelta(milliseconds=50))
    assert await status_of(http, url, ttl_token) == 200
    clock.set_wall(record.expires + timedelta(milliseconds=50))
    assert await status_of(http, url, ttl_token) == 401
    async with http.get(url, headers=auth(ttl_token)) as resp:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert await status_of(http, url, token) == 200


async def test_rotate_with_grace_then_old_tokens_end(proxy, http):
    cfg = str(proxy.config_path)
    url = proxy.app_url("v1p1/orgs")
    clock = proxy.services.authenticator.clock = SteppedClock()
    old = await cli_token("tokens", "issue", "acme", "--config", cfg)
    other = await proxy.token("other")
    assert await status_of(http, url, old) == 200  # cached by the proxy from now on

    code, out, err = await run_cli("tokens", "rotate", "acme", "--config", cfg, "--grace", "2s")
    assert code == 0, err
    new = out.rstrip("\n").splitlines()[-1]
    assert TOKEN_RE.match(new) and new != old
    assert token_id(old) in out  # names the tokens whose grace began
    ended = {r["id"]: r for r in await list_json(proxy.config_path, "acme")}[token_id(old)]
    grace_end = datetime.fromisoformat(ended["expires"].replace("Z", "+00:00"))
    rotated = await proxy.services.store.get_token(token_id(new))
    assert abs((grace_end - rotated.created).total_seconds() - 2) < 0.1

    # Inside the grace both work...
    clock.set_wall(grace_end - timedelta(milliseconds=100))
    assert await status_of(http, url, new) == 200
    assert await status_of(http, url, old) == 200
    # ...and once it ends, plus at most cache_ttl for the cached lookup, the old one is 401.
    clock.set_wall(grace_end + timedelta(seconds=CACHE_TTL + 0.05))
    assert await status_of(http, url, old) == 401
    assert await status_of(http, url, new) == 200
    # Rotation is per vendor: another vendor's token is untouched.
    assert await status_of(http, proxy.app_url("v1p1/orgs", app="app-8"), other) == 200

    # --grace 0s: the previous token stops within cache_ttl.
    newest = await cli_token("tokens", "rotate", "acme", "--config", cfg, "--grace", "0s")
    # (from whichever is later: the real time the CLI revoked it, or where the clock stands)
    clock.set_wall(max(datetime.now(UTC), datetime.fromtimestamp(clock.time(), UTC)))
    clock.advance(CACHE_TTL + 0.05)
    assert await status_of(http, url, new) == 401
    assert await status_of(http, url, newest) == 200


async def test_revoke_one_and_all_reach_the_running_proxy(proxy, http):
    cfg = str(proxy.config_path)
    url = proxy.app_url("v1p1/orgs")
    a, b, c = await asyncio.gather(
        *(cli_token("tokens", "issue", "acme", "--config", cfg) for _ in range(3))
    )
    other = await proxy.token("other")
    other_url = proxy.app_url("v1p1/orgs", app="app-8")
    for token in (a, b, c):
        assert await status_of(http, url, token) == 200  # now cached

    code, out, err = await run_cli("tokens", "revoke", token_id(a), "--config", cfg)
    assert code == 0, err
    assert token_id(a) in out and a not in out
    await wait_for_status(http, url, a, 401, within=CACHE_TTL + 0.5)
    assert await status_of(http, url, b) == 200

    code, out, err = await run_cli("tokens", "revoke", "--all", "acme", "--config", cfg)
    assert code == 0, err
    assert token_id(b) in out and token_id(c) in out
    for token in (b, c):
        await wait_for_status(http, url, token, 401, within=CACHE_TTL + 0.5)
    assert await status_of(http, other_url, other) == 200

    # Revoked tokens stay listed, ended: their expires is the revocation time.
    rows = {r["id"]: r for r in await list_json(proxy.config_path, "acme")}
    for token in (a, b, c):
        assert rows[token_id(token)]["expires"] is not None


async def test_list_fields_prefix_last_used_and_no_secret(proxy, http):
    cfg = str(proxy.config_path)
    acme = await cli_token("tokens", "issue", "acme", "--config", cfg)
    other = await cli_token("tokens", "issue", "other", "--config", cfg)
    assert await status_of(http, proxy.app_url("v1p1/orgs"), acme) == 200
    # The gateway batches last-use times (every few seconds); flush now instead of waiting.
    await proxy.services.authenticator.flush_last_used()

    code, out, err = await run_cli("tokens", "list", "--config", cfg, "--json")
    assert code == 0, err
    rows = json.loads(out)
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {token_id(acme), token_id(other)}
    for token, vendor in ((acme, "acme"), (other, "other")):
        row = by_id[token_id(token)]
        assert set(row) == LISTING_FIELDS
        assert row["vendor"] == vendor
        prefix = f"orp_{token_id(token)}_"
        assert row["prefix"].startswith(prefix) and len(row["prefix"]) <= len(prefix) + 4
        assert token.startswith(row["prefix"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", row["created"])
    assert by_id[token_id(acme)]["last_used"] is not None
    assert by_id[token_id(other)]["last_used"] is None

    # Vendor filter; the text table; neither holds a secret (nor its hash).
    assert [r["id"] for r in await list_json(proxy.config_path, "other")] == [token_id(other)]
    code, text, err = await run_cli("tokens", "list", "acme", "--config", cfg)
    assert code == 0, err
    header = text.splitlines()[0].split()
    assert header[:6] == ["ID", "VENDOR", "PREFIX", "CREATED", "EXPIRES", "LAST_USED"]
    assert token_id(acme) in text and token_id(other) not in text
    records = await proxy.services.store.list_tokens()
    for token in (acme, other):
        secret = TOKEN_RE.match(token).group(2)  # type: ignore[union-attr]
        for blob in (out, text):
            # The prefix shows the secret's first 4 characters; nothing beyond them.
            assert secret not in blob and secret[4:16] not in blob
    for record in records:
        assert record.secret_hash not in out + text


async def test_cli_refusals(proxy):
    cfg = str(proxy.config_path)
    code, out, err = await run_cli("tokens", "issue", "nobody", "--config", cfg)
    assert code != 0 and "nobody" in err and not out.strip()
    code, _, err = await run_cli("tokens", "revoke", "zzzzzzzzzzzz", "--config", cfg)
    assert code == 1 and "zzzzzzzzzzzz" in err
    # Something that is neither an id, a token nor a prefix is refused without being echoed.
    token = await proxy.token()
    code, out, err = await run_cli("tokens", "revoke", token + "x", "--config", cfg)
    assert code == 1 and token not in out + err
    code, _, err = await run_cli("tokens", "rotate", "acme", "--config", cfg)  # --grace needed
    assert code != 0 and "--grace" in err
    code, _, err = await run_cli("tokens", "issue", "acme", "--config", cfg, "--ttl", "soon")
    assert code != 0 and "soon" in err


async def test_audit_records_cli_actions(proxy):
    cfg = str(proxy.config_path)
    issued = await cli_token("tokens", "issue", "acme", "--config", cfg, "--ttl", "2h")
    rotated = await cli_token("tokens", "rotate", "acme", "--config", cfg, "--grace", "1h")
    code, _, err = await run_cli("tokens", "revoke", token_id(rotated), "--config", cfg)
    assert code == 0, err
    code, _, err = await run_cli("tokens", "revoke", "--all", "acme", "--config", cfg)
    assert code == 0, err

    code, out, err = await run_cli("audit", "--config", cfg, "--json")
    assert code == 0, err
    events = json.loads(out)
    seen = [(e["action"], e["interface"], e["token_id"]) for e in events]
    assert seen == [
        ("token.issue", "cli", token_id(issued)),
        ("token.rotate", "cli", token_id(rotated)),
        ("token.revoke", "cli", token_id(rotated)),
        ("token.revoke_all", "cli", None),
    ]
    assert token_id(issued) in events[1]["detail"]["ending"]
    assert token_id(issued) in events[3]["detail"]["token_ids"]
    for event in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", event["at"])
        assert event["vendor"] == "acme"
    # The text form: one line per event, newest last; never a token.
    code, text, err = await run_cli("audit", "--config", cfg)
    assert code == 0, err
    lines = text.strip().splitlines()
    assert len(lines) == 4 and "token.revoke_all" in lines[-1] and " cli " in lines[0]
    assert issued not in out + text and rotated not in out + text


async def test_people_read_durations_as_written_and_a_second_revoke_says_so(proxy):
    # docs/commands.md: no Python value in what a person reads (a timedelta's "0:00:05", None).
    cfg = str(proxy.config_path)
    await cli_token("tokens", "issue", "acme", "--config", cfg)
    code, out, err = await run_cli("tokens", "rotate", "acme", "--config", cfg, "--grace", "5s")
    assert code == 0, err
    assert "(grace 5s)" in out and "0:00:05" not in out
    rotated = out.rstrip("\n").splitlines()[-1]
    code, out, err = await run_cli("audit", "--config", cfg)
    assert code == 0, err
    assert "None" not in out and "ttl=-" in out and "grace=5s" in out, out
    code, out, err = await run_cli("tokens", "revoke", token_id(rotated), "--config", cfg)
    assert code == 0 and out.startswith(f"revoked {token_id(rotated)}"), out + err
    # Revoking it again: said as it is, and no second audit event.
    code, again, err = await run_cli("tokens", "revoke", token_id(rotated), "--config", cfg)
    assert code == 0, err
    assert "already revoked" in again and not again.startswith("revoked"), again
    events = await proxy.services.store.list_audit()
    assert [e.action for e in events].count("token.revoke") == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "hosts", ["[::1]:{0},[::1]:{1}", ":hunter2pw@127.0.0.1:{0},[::1]:{1}"], ids=["v6", "v4-v6"]
)
async def test_tokens_list_with_ipv6_sentinels_and_none_answering_is_one_line(
    hosts: str, tmp_path: Path
) -> None:
    # A Sentinel host list that config validate accepts opens the store on every Python
    # (Debian's 3.11.2 urllib refuses "127.0.0.1:P,[::1]:Q"); with no sentinel answering, the
    # operator reads one line naming the store and what each sentinel said, exit 1: no
    # traceback, no password, no client reprs.
    ports = (free_port(), free_port())
    config = tmp_path / "proxy.toml"
    config.write_text(f'[store]\nurl = "redis+sentinel://{hosts.format(*ports)}/mymaster"\n')
    code, _, err = await run_cli("config", "validate", str(config))
    assert code == 0, err
    code, out, err = await run_cli("tokens", "list", "--config", str(config))
    assert code == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: redis store redis+sentinel://"), line
    assert "No master found for 'mymaster'" in line and f"[::1]:{ports[1]}" in line
    assert "hunter2pw" not in err and "<redis" not in err
