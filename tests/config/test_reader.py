"""``${file:/path}`` values (docs/commands.md: Kubernetes Secrets mounted as
files) in a real ``serve`` process: the file's contents less one trailing newline, read again
on SIGHUP, so a rotated key and secret apply without a restart; a missing file is refused
naming the key."""

from __future__ import annotations

import asyncio
import re
import signal

from proxy.config import validate
from proxy.errors import ConfigError
from tests.serve.test_server import ProxyProcess
from tests.support import ADMIN_TOKEN, auth, base_config


def signer(rec) -> str | None:
    for name, value in rec.headers:
        if name.lower() == "authorization":
            match = re.search(r'oauth_consumer_key="([^"]+)"', value)
            return match.group(1) if match else None
    return None


async def test_sighup_reads_rotated_secret_files(sandbox, tmp_path, http):
    key_file, secret_file = tmp_path / "key", tmp_path / "secret"
    key_file.write_text(sandbox.key + "\n")
    secret_file.write_text(sandbox.secret + "\n")
    doc = base_config(tmp_path, sandbox)
    doc["connections"]["app-7"]["key"] = f"${{file:{key_file}}}"
    doc["connections"]["app-7"]["secret"] = f"${{file:{secret_file}}}"
    proc = await ProxyProcess(tmp_path, doc).start()
    try:
        async with http.post(
            f"{proc.admin_url}/admin/vendors/acme/tokens",
            headers=auth(ADMIN_TOKEN),
        ) as resp:
            token = (await resp.json())["token"]
        async with http.get(proc.app_url("v1p1/orgs"), headers=auth(token)) as resp:
            assert resp.status == 200
        assert signer(sandbox.recorded[-1]) == sandbox.key

        sandbox.accept_credentials("rotated-key", "rotated-secret-0123456789")
        key_file.write_text("rotated-key\n")
        secret_file.write_text("rotated-secret-0123456789")
        lines = proc.lines()
        proc.send(signal.SIGHUP)
        await proc.wait_for_log("config reloaded", after=lines)
        await asyncio.sleep(0)
        async with http.get(proc.app_url("v1p1/orgs"), headers=auth(token)) as resp:
            assert resp.status == 200
        assert signer(sandbox.recorded[-1]) == "rotated-key" and sandbox.recorded[-1].verified
        assert "rotated-secret-0123456789" not in proc.text()
    finally:
        await proc.stop()


def test_a_missing_file_is_an_error_naming_the_key(tmp_path) -> None:
    raw = {"admin": {"token": f"${{file:{tmp_path}/nope}}"}}
    try:
        validate(raw, {})
    except ConfigError as err:
        assert err.problems == [f"admin.token: file {tmp_path}/nope does not exist"]
    else:
        raise AssertionError("a missing file validated")
    (tmp_path / "crlf").write_bytes(b"a-token-of-twenty-chars\r\n")
    config = validate({"admin": {"token": f"${{file:{tmp_path}/crlf}}"}}, {})
    assert config.admin.token == "a-token-of-twenty-chars"
