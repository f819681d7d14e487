"""The README's quick start on a fresh Debian or Ubuntu machine, with the distribution's own
Python (externally managed, PEP 668: a system-wide ``pip install`` is refused there).

The README's first command is run as written (``python3`` being Debian's ``/usr/bin/python3``,
in a copy of the repository with no virtual environment yet), except that ``demo`` gets a free
``--port``, since 8080 may be taken on a shared machine. Its ``curl`` line is run as pasted;
Ctrl-C ends it with exit 0. The test command that CI runs is the README's, verbatim.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import free_port
from tests.test_demo import CURL_STANDIN, read_until_curl

REPO = Path(__file__).resolve().parents[1]
DEBIAN_PYTHON = Path("/usr/bin/python3")
QUICK_START = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/oneroster-proxy demo"
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install ".[test]" && .venv/bin/python -m pytest'
)


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_quick_start_and_test_command_use_a_virtual_environment() -> None:
    commands = readme_commands()
    assert commands[0] == QUICK_START
    assert commands[1] == TEST_COMMAND


def test_ci_runs_exactly_the_readme_test_command() -> None:
    script = (REPO / ".ci" / "run").read_text().splitlines()
    lines = [line.strip() for line in script if line.strip() and not line.startswith("#")]
    assert lines[-1] == TEST_COMMAND
    assert "python3-venv" in "\n".join(script)


def _clone(into: Path) -> Path:
    """The repository's files as a fresh clone has them (no venv, no build output)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        target = into / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.exists():  # a file deleted in the work tree but not yet in the index
            shutil.copy2(source, target)
    return into


def test_quick_start_with_debians_own_python(tmp_path: Path) -> None:
    if not DEBIAN_PYTHON.exists():
        pytest.skip("no /usr/bin/python3: not a Debian or Ubuntu machine")
    probe = subprocess.run([str(DEBIAN_PYTHON), "-c", "import ensurepip"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Debian's python3 has no venv module: apt-get install python3-venv")
    clone = _clone(tmp_path / "clone")
    # A PATH on which `python3` is the distribution's, as on a fresh machine.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(DEBIAN_PYTHON)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_BREAK"))
    }
    env["PATH"] = os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"])
    if shutil.which("curl", path=env["PATH"]) is None:
        stand_in = bin_dir / "curl"
        stand_in.write_text(f"#!{DEBIAN_PYTHON}\n{CURL_STANDIN}")
        stand_in.chmod(0o755)

    # What PEP 668 refuses, and why the README does not say it.
    refused = subprocess.run(
        ["python3", "-m", "pip", "install", "--dry-run", "."],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    if (Path("/usr/lib/python3.11/EXTERNALLY-MANAGED")).exists():
        assert refused.returncode != 0

    install, _, demo = QUICK_START.rpartition(" && ")
    done = subprocess.run(
        ["bash", "-c", install], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    venv_python = (clone / ".venv" / "bin" / "python").resolve()
    assert venv_python == DEBIAN_PYTHON.resolve(), "the venv is Debian's Python"

    # The wheel ships the example configuration.
    example = subprocess.run(
        [str(clone / ".venv/bin/oneroster-proxy"), "config", "example"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert example.stdout == (REPO / "config" / "example.toml").read_text()

    port = free_port()
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {demo} --port {port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        curl = read_until_curl(proc)[-1]
        answer = subprocess.run(
            ["sh", "-c", curl], capture_output=True, text=True, env=env, timeout=30
        )
        assert answer.returncode == 0, answer.stderr
        assert '"users"' in answer.stdout
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
