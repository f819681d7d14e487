"""``oneroster-proxy demo``: the README's first command (docs/commands.md).

Runs the real command as a subprocess, takes the ``curl`` line it prints, runs exactly that
line through a shell (with a tiny ``curl`` stand-in on PATH when the machine has none, which
parses the same arguments), and checks the answer is a users page from the sandbox district,
then that Ctrl-C ends everything the demo started.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import free_port

CURL_STANDIN = """\
import sys, urllib.request
args = sys.argv[1:]
headers, url = {}, None
while args:
    arg = args.pop(0)
    if arg == "-H":
        name, _, value = args.pop(0).partition(":")
        headers[name.strip()] = value.strip()
    else:
        url = arg
with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
    sys.stdout.write(resp.read().decode())
"""


def read_until_curl(proc: subprocess.Popen[str], timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("curl "):
            return lines
    raise AssertionError(f"no curl line from the demo: {lines}")


def test_demo_prints_a_curl_line_that_works_as_pasted(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    if shutil.which("curl") is None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        stand_in = bin_dir / "curl"
        stand_in.write_text(f"#!{sys.executable}\n{CURL_STANDIN}")
        stand_in.chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from proxy.cli import main; main()", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        lines = read_until_curl(proc)
        curl = lines[-1]
        assert f"127.0.0.1:{port}/" in curl
        token_line = next(line for line in lines if line.startswith("vendor token:"))
        assert token_line.split()[-1] in curl
        argv = shlex.split(curl)
        assert argv[0] == "curl"
        answer = subprocess.run(
            ["sh", "-c", curl], capture_output=True, text=True, env=env, timeout=30
        )
        assert answer.returncode == 0, answer.stderr
        page = json.loads(answer.stdout)
        assert len(page["users"]) == 2
        assert all(u["sourcedId"] and u["email"] for u in page["users"])
        # docs/configuration.md rewrite_hrefs (on by default): the page's hrefs name the proxy,
        # and following one with the vendor token works.
        hrefs = [ref["href"] for u in page["users"] for ref in u["orgs"]]
        app_base = curl.split("'")[-2].split("/ims/oneroster/")[0] + "/ims/oneroster/"
        assert hrefs and all(h.startswith(app_base) for h in hrefs), hrefs
        bearer = {"Authorization": "Bearer " + token_line.split()[-1]}
        request = urllib.request.Request(hrefs[0], headers=bearer)
        with urllib.request.urlopen(request, timeout=30) as followed:
            org = json.loads(followed.read())["org"]
        assert org["sourcedId"] == hrefs[0].rsplit("/", 1)[1]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    # Everything it started is gone: the gateway port is free again.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_demo_killed_by_sigkill_leaves_no_secrets_past_the_next_start(tmp_path: Path) -> None:
    """SIGKILL gives the demo no chance to remove its folder (admin token, district secret):
    the next demo removes it, and never a live demo's."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from proxy.cli import main; main()", "demo", "--port",
             str(free_port())],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        read_until_curl(proc)
        return proc

    def folders() -> set[str]:
        return {p.name for p in tmp_path.glob("oneroster-proxy-demo-*")}

    killed = start()
    first = folders()
    assert len(first) == 1
    alive = start()  # a live demo's folder is not touched by another start
    both = folders()
    assert len(both) == 2 and first < both
    killed.kill()
    killed.wait(timeout=20)
    assert folders() == both  # SIGKILL: left behind
    third = start()
    try:
        left = folders()
        assert not left & first and len(left) == 2  # the killed one's gone, the live kept
        assert (both - first) <= left
    finally:
        for proc in (alive, third):
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
    assert folders() == set()
