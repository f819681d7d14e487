"""Private run folders (``demo``'s, ``serve --workers``'s) that a killed process leaves behind
are removed at the next start (docs/commands.md).

A run folder holds secrets (the demo's admin token and district secret, the supervisor's config
snapshot and admin sockets), and a process ended by SIGKILL cannot remove its own. Each folder
is named after the process that made it, ``<prefix><pid>.<start>-<random>`` (``start``: the
process's start time in clock ticks since boot, from ``/proc``), so the next start can tell a
dead owner from a live one without reading anything inside. A folder is removed only when it
is this user's, a real folder (not a link), and its owner is gone: no such process, a zombie,
or another process that took the same pid later. A live owner's folder is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (the start time), None without ``/proc`` or the
    process; ``"Z"`` for a zombie (dead, not yet reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ")".
    fields = text[text.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return "Z"
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    now = _start_time(pid)
    if now == "Z":
        return False
    # Without /proc (or a folder named without a start time) the pid alone decides.
    return now is None or start == "0" or now == start


def clean_stale(prefix: str, folder: str | None = None) -> list[str]:
    """Remove the run folders named ``prefix...`` in ``folder`` (the temp folder) whose
    owning process is dead; returns their paths."""
    base = folder or tempfile.gettempdir()
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(\d+)-[^/]+$")
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    uid = os.getuid()
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        path = os.path.join(base, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            continue
        pid, start = int(match.group(1)), match.group(2)
        if pid == os.getpid() or _alive(pid, start):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def make_run_dir(prefix: str) -> str:
    """A new 0700 folder named for this process, after removing stale ones of ``prefix``."""
    with contextlib.suppress(OSError):
        clean_stale(prefix)
    pid = os.getpid()
    return tempfile.mkdtemp(prefix=f"{prefix}{pid}.{_start_time(pid) or '0'}-")
