"""A real ``redis-server`` on a free loopback port, for tests (docs/configuration.md, ``[store]
url``: the store suite, the outage tests and the replica tests run against Redis itself, not a
fake).

    with RedisServer() as server:          # or: async with RedisServer() as server:
        store = RedisStore(server.url)
        server.stop()                      # an outage
        server.start()                     # Redis is back, same port, empty

Nothing is persisted (``--save "" --appendonly no``). ``require_redis_server()`` skips the
calling test when ``redis-server`` is missing, or fails it when ``CI`` is set: in CI a missing
server is a broken setup, not a reason to pass.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

EXECUTABLE = "redis-server"


def require_executable(name: str, message: str) -> str:
    """The path of ``name``; without it skip the test with ``message`` (under ``CI``, fail it:
    there a missing program is a broken setup, not a reason to pass)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def require_redis_server() -> str:
    """The path of ``redis-server``; skip (or, under ``CI``, fail) the test without it."""
    return require_executable(
        EXECUTABLE,
        f"{EXECUTABLE} is not on PATH: install it (Debian: apt-get install redis-server) "
        "to run the Redis tests",
    )


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    """A ``redis-server`` or ``redis-sentinel`` in the foreground; it writes to its logfile,
    so nothing is read from it."""
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` subprocess on 127.0.0.1; ``start()`` again after ``stop()`` reuses
    the port, so clients holding ``url`` see Redis come back."""

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        """``extra_args`` go to redis-server as they are, e.g. ``("--requirepass", "pw")``."""
        self._fixed_port = port is not None
        self._extra_args = extra_args
        self.port = port if port is not None else free_port()
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="orp-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        executable = require_redis_server()
        for _attempt in range(5):
            if self._spawn(executable):
                return self
            if self._fixed_port or self._process is None:
                break
            # Another process took the port between free_port() and bind: pick a new one.
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self._log()}")

    def _spawn(self, executable: str) -> bool:
        log = Path(self._dir.name, "redis.log")
        # fmt: off
        argv = [
            executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--logfile", str(log),
            "--daemonize", "no",
            *self._extra_args,
        ]
        # fmt: on
        self._process = spawn(argv)
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if self._answers():
                return True
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING: {self._log()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                # +PONG, or -NOAUTH when started with --requirepass: either way it is serving.
                return sock.recv(64)[:6] in (b"+PONG\r", b"-NOAUT")
        except OSError:
            return False

    def _log(self) -> str:
        try:
            return Path(self._dir.name, "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections hang instead of failing, like a stuck host."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server (SIGKILL, like a crash); the port is free when this returns."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()  # also ends a paused server: SIGKILL needs no SIGCONT
        process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> RedisServer:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A test that forgot close() must not leave a redis-server behind.
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.kill()
