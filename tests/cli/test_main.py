"""What a person at a terminal meets (docs/commands.md): ``--version``, ``ORP_CONFIG``,
``config example``, text (not JSON) logs for interactive commands, ``--log-format`` before or
after the subcommand, a closed stdout ending a command quietly, ``demo`` stopped by SIGTERM,
and the JSON log of ``serve --workers`` (warnings inside it, no bogus admin address).

Every command runs as a real subprocess, as a user types it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from proxy import __version__
from tests.support import free_port, toml_dumps

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from proxy.cli import main; main()"]


def cli(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        **kw,
    )


def config_file(tmp_path: Path, district_url: str = "http://127.0.0.1:9") -> Path:
    doc = {
        "server": {"listen": f"127.0.0.1:{free_port()}", "upstream_timeout": "2s"},
        "admin": {"listen": f"127.0.0.1:{free_port()}", "token": "admin-token-0123456789abcdef"},
        "store": {"url": f"sqlite://{tmp_path}/store.db"},
        "vendors": {"acme": {}},
        "districts": {"springfield": {"base_url": district_url}},
        "connections": {
            "app-7": {
                "vendor": "acme",
                "district": "springfield",
                "key": "k",
                "secret": "${APP7_SECRET}",
                "scopes": ["roster-core.readonly"],
            }
        },
    }
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(doc))
    return path


ENV = {"APP7_SECRET": "district-secret-value"}


def test_version() -> None:
    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"oneroster-proxy {__version__}"


def test_config_from_orp_config_when_the_flag_is_absent(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    env = {**ENV, "ORP_CONFIG": str(path)}
    issued = cli("tokens", "issue", "acme", env=env)
    assert issued.returncode == 0, issued.stderr
    assert issued.stdout.strip().splitlines()[-1].startswith("orp_")
    listed = cli("tokens", "list", "--json", env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1
    validated = cli("config", "validate", env=env)
    assert validated.returncode == 0 and f"{path}: ok" in validated.stdout
    # The flag wins over the variable.
    other = cli("tokens", "list", "--config", str(tmp_path / "missing.toml"), env=env)
    assert other.returncode != 0 and "missing.toml" in other.stderr
    # Neither: a usage error that says what is missing.
    bare = {k: v for k, v in os.environ.items() if k != "ORP_CONFIG"}
    neither = subprocess.run(
        [*CLI, "tokens", "list"], capture_output=True, text=True, env=bare, timeout=60
    )
    assert neither.returncode == 2 and "--config" in neither.stderr
    assert "ORP_CONFIG" in neither.stderr  # the other way to give it
    validate = subprocess.run(
        [*CLI, "config", "validate"], capture_output=True, text=True, env=bare, timeout=60
    )
    assert validate.returncode == 2 and "ORP_CONFIG" in validate.stderr


def test_config_example_prints_the_shipped_example() -> None:
    done = cli("config", "example")
    assert done.returncode == 0
    assert done.stdout == (REPO / "config" / "example.toml").read_text()


def test_interactive_commands_log_text_and_log_format_goes_anywhere(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    plain = cli("tokens", "issue", "acme", "--config", str(path), env=ENV)
    assert plain.returncode == 0, plain.stderr
    assert "token issued" in plain.stderr
    assert not [line for line in plain.stderr.splitlines() if line.startswith("{")], plain.stderr
    for args in (
        ["--log-format", "json", "tokens", "issue", "acme"],
        ["tokens", "issue", "acme", "--log-format", "json"],
    ):
        done = cli(*args, "--config", str(path), env=ENV)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines()]
        assert any(line["msg"] == "token issued" for line in lines)


def _closed_stdout(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run with a stdout whose reader is already gone, as after ``| head`` has exited."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [*CLI, *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
    finally:
        os.close(write)


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    assert cli("tokens", "issue", "acme", "--config", str(path), env=ENV).returncode == 0
    for args in (["audit", "--json"], ["check", "app-7", "--json"], ["tokens", "list"]):
        done = _closed_stdout(*args, "--config", str(path), env=ENV)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_head_of_a_long_audit_exits_zero(tmp_path: Path) -> None:
    """The shell pipeline itself: more output than a pipe holds, ``head -1`` leaves early."""
    from proxy import tokens
    from proxy.store import open_store

    path = config_file(tmp_path)

    async def many() -> None:
        store = open_store(f"sqlite://{tmp_path}/store.db")
        await store.open()
        try:
            for _ in range(400):
                await tokens.issue(store, "acme", ttl=None, interface="cli")
        finally:
            await store.close()

    asyncio.run(many())
    command = " ".join([*(f"'{a}'" for a in CLI), "audit", "--json", "--config", str(path)])
    done = subprocess.run(
        ["bash", "-c", f"{command} | head -1; exit ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[\n"
    assert done.stderr == ""


def _wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_demo_sigterm_exits_zero_and_removes_its_secrets(tmp_path: Path) -> None:
    for when in ("starting", "serving"):
        tmp = tmp_path / when
        tmp.mkdir()
        proc = subprocess.Popen(
            [*CLI, "demo", "--port", str(free_port())],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
        try:
            # The demo's directory exists from its first moment (the config with the admin
            # token and the district secret is written into it).
            _wait_for(lambda tmp=tmp: any(tmp.iterdir()), "the demo's temp dir")  # type: ignore[misc]
            if when == "serving":
                assert proc.stdout is not None
                while not proc.stdout.readline().startswith("curl "):
                    pass
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 0, (when, proc.stderr.read() if proc.stderr else "")
        assert list(tmp.iterdir()) == [], f"{when}: the demo left {list(tmp.iterdir())}"


SITECUSTOMIZE = """\
import logging, threading, time, warnings

def _warn_once_logging_is_set_up():
    while not logging.getLogger().handlers:
        time.sleep(0.02)
    warnings.warn("a warning raised inside the process")

threading.Thread(target=_warn_once_logging_is_set_up, daemon=True).start()
"""


def test_serve_workers_log_is_json_throughout(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        **ENV,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(path), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        lines.extend(iter(proc.stderr.readline, ""))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _wait_for(
            lambda: (
                sum('"msg": "worker ready"' in line for line in list(lines)) >= 2
                and sum("a warning raised inside" in line for line in list(lines)) >= 3
            ),
            "two ready workers and the warnings of three processes",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        reader.join(10)
    assert code == 0
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    warned = [p for p in parsed if "a warning raised inside" in p["msg"]]
    assert len(warned) >= 3 and all(p["level"] == "warning" for p in warned)
    listening = [p for p in parsed if p["msg"] == "oneroster-proxy listening"]
    assert listening, parsed
    for line in listening:
        assert not str(line["admin"]).endswith(":t")
        port = str(line["admin"]).rpartition(":")[2]
        assert line["admin"].startswith("unix:") or port.isdigit(), line


def test_every_command_takes_orp_config_and_log_format_after_it(
    monkeypatch: Any,
) -> None:
    """Over the whole argparse tree, so a command added later is held to it too."""
    import argparse

    from proxy.cli import _parsers, build_parser

    monkeypatch.setenv("ORP_CONFIG", "/etc/oneroster-proxy/proxy.toml")
    parsers = [p for p in _parsers(build_parser()) if p.add_help]
    with_config = [p for p in parsers if "--config" in p._option_string_actions]
    assert len(with_config) >= 8
    for parser in with_config:
        action = parser._option_string_actions["--config"]
        assert not action.required and action.default == "/etc/oneroster-proxy/proxy.toml", (
            parser.prog
        )
    for parser in parsers:
        leaf = not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        if leaf:
            assert "--log-format" in parser._option_string_actions, parser.prog


@pytest.mark.parametrize("key", ["server.listen", "admin.listen"])
def test_serve_on_a_port_in_use_is_one_line_naming_the_key(tmp_path: Path, key: str) -> None:
    """``serve`` with its gateway or admin port taken: one line naming the listen key and the
    reason, exit 2, no traceback (as ``config validate`` reports problems)."""
    path = config_file(tmp_path)
    table = key.split(".")[0]
    host, port = tomllib.loads(path.read_text())[table]["listen"].rsplit(":", 1)
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen(1)
        done = cli("serve", "--config", str(path), env=ENV)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{key}: cannot listen on {host}:{port} (Address already in use)"
    ]


def test_a_url_with_a_password_fails_validation_cleanly(tmp_path: Path) -> None:
    """``serve`` and ``config validate`` on a file whose district URL carries userinfo: the
    key named, exit 2, no traceback, the password nowhere."""
    path = config_file(tmp_path, "https://sis:hunter2-pw@127.0.0.1:9/api")
    for args in (("serve", "--config", str(path)), ("config", "validate", str(path))):
        done = cli(*args, env=ENV)
        assert done.returncode in (1, 2), (args, done.stderr)
        assert "districts.springfield.base_url: must not contain a user name or password" in (
            done.stderr + done.stdout
        )
        assert "Traceback" not in done.stderr
        assert "hunter2" not in done.stderr + done.stdout


def test_help_lists_every_command_group_in_the_one_declared_order() -> None:
    # One list says where each group stands in --help (proxy.cli.HELP_ORDER); a command module
    # it does not name would fall to the end unnoticed.
    from proxy import cli

    names = [module.__name__.rpartition(".")[2] for module in cli.command_modules()]
    assert set(names) <= set(cli.HELP_ORDER)
    assert names == [name for name in cli.HELP_ORDER if name in names]
    shown = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    listed = re.findall(r"^    (\w+)", shown, re.M)
    assert listed.index("serve") < listed.index("tokens") < listed.index("check")
    assert listed.index("connections") < listed.index("store") < listed.index("audit")
