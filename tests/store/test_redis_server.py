"""The ``redis-server`` helper other suites import: restarts on its port, and a missing binary
fails the run under CI instead of skipping it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, require_redis_server


def test_missing_redis_server_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="redis-server is not on PATH"):
        require_redis_server()


def test_missing_redis_server_skips_outside_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_redis_server()


def test_stop_and_start_on_the_same_port() -> None:
    require_redis_server()
    with RedisServer() as server:
        port, url = server.port, server.url
        assert url == f"redis://127.0.0.1:{port}/0" and server.running
        server.stop()
        assert not server.running
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        server.start()
        assert server.running and server.port == port
    assert not server.running
