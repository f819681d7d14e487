"""Run folders left by a killed process are removed at the next start, never a live one's
(``proxy/serve/rundirs.py``; docs/commands.md ``demo`` and ``serve --workers``). Real
processes: one running, one dead and reaped, one dead but not reaped (a zombie)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from proxy.serve.rundirs import _start_time, clean_stale

PREFIX = "oneroster-proxy-test-"


def folder(base: Path, pid: int, start: str | None) -> Path:
    path = base / f"{PREFIX}{pid}.{start or '0'}-abc"
    path.mkdir()
    (path / "secret").write_text("admin token")
    return path


def test_only_dead_owners_folders_go(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reaped = subprocess.Popen([sys.executable, "-c", "pass"])
    reaped.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        kept = folder(tmp_path, live.pid, _start_time(live.pid))
        # The live pid, but another start time: the pid was reused; its owner is gone.
        reused = tmp_path / f"{PREFIX}{live.pid}.1-xyz"
        reused.mkdir()
        gone = folder(tmp_path, reaped.pid, "12345")
        start = _start_time(zombie.pid)
        for _ in range(200):  # until it has exited (not reaped: a zombie)
            if _start_time(zombie.pid) == "Z":
                break
            subprocess.run(["sleep", "0.05"], check=True)
        undead = folder(tmp_path, zombie.pid, start)
        other = tmp_path / "oneroster-proxy-something-else"
        other.mkdir()
        removed = set(clean_stale(PREFIX, str(tmp_path)))
        assert removed == {str(reused), str(gone), str(undead)}
        assert kept.exists() and (kept / "secret").exists() and other.exists()
    finally:
        live.kill()
        live.wait()
        zombie.wait()
