"""A real Redis Sentinel deployment on loopback, for tests and ``bench/chaos.py``: one master,
one replica and three ``redis-sentinel`` processes, every port chosen at run time.

    with SentinelCluster() as cluster:
        url = cluster.url                   # redis+sentinel://127.0.0.1:P1,...:P3/orp
        cluster.kill_master()               # SIGKILL, like a crashed host
        address = cluster.wait_for_failover(old, within=30)   # the promoted replica
        cluster.restore()                   # the dead node back (Sentinel makes it a replica)

Failover is quick on purpose (``down-after-milliseconds`` 1000, ``failover-timeout`` 5000), so
a test sees a whole failover in a few seconds. ``require_sentinel()`` skips the calling test
when ``redis-sentinel`` is missing, or fails it under ``CI`` (a broken setup there).
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.redis_server import (
    RedisServer,
    free_port,
    require_executable,
    require_redis_server,
    spawn,
)

SERVICE = "orp"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def require_sentinel() -> str:
    require_redis_server()
    return require_executable(
        "redis-sentinel", "redis-sentinel is not on PATH (Debian: apt-get install redis-sentinel)"
    )


def command(port: int, *args: str, timeout: float = 1.0) -> str:
    """One inline command to a Redis or Sentinel on 127.0.0.1; the raw reply, decoded."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall((" ".join(args) + "\r\n").encode())
        data = b""
        sock.settimeout(timeout)
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")


def role(port: int) -> str:
    """``master``, ``slave`` or ``down``."""
    try:
        reply = command(port, "ROLE")
    except OSError:
        return "down"
    for kind in ("master", "slave"):
        if kind in reply:
            return kind
    return "down"


class Sentinel:
    def __init__(self, executable: str, workdir: Path, master_port: int) -> None:
        self.port = free_port()
        self.dir = workdir / f"sentinel-{self.port}"
        self.dir.mkdir()
        # Sentinel rewrites its own config file as it learns the deployment.
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "daemonize no",
                    f"dir {self.dir}",
                    f"logfile {self.dir / 'sentinel.log'}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {SERVICE} 1",
                    "",
                ]
            )
        )
        self.process = spawn([executable, str(self.conf)])

    def master(self) -> tuple[str, int] | None:
        try:
            reply = command(self.port, "SENTINEL", "get-master-addr-by-name", SERVICE)
        except OSError:
            return None
        parts = [p for p in reply.split("\r\n") if p and not p.startswith(("*", "$"))]
        return (parts[0], int(parts[1])) if len(parts) == 2 else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


class SentinelCluster:
    """Master + replica (RedisServer) and three sentinels watching them."""

    def __init__(self) -> None:
        self._executable = require_sentinel()
        self._dir = tempfile.TemporaryDirectory(prefix="orp-sentinel-")
        self.nodes: list[RedisServer] = []
        self.sentinels: list[Sentinel] = []
        self.killed: RedisServer | None = None

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> SentinelCluster:
        master = RedisServer().start()
        replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(master.port))).start()
        self.nodes = [master, replica]
        self._wait(lambda: "master_link_status:up" in command(replica.port, "INFO replication"))
        workdir = Path(self._dir.name)
        self.sentinels = [Sentinel(self._executable, workdir, master.port) for _ in range(3)]
        # Ready when every sentinel names the master and has found the replica and its peers.
        self._wait(lambda: all(self._knows_everything(s) for s in self.sentinels), within=30)
        return self

    def _knows_everything(self, sentinel: Sentinel) -> bool:
        try:
            reply = command(sentinel.port, "SENTINEL", "master", SERVICE)
        except OSError:
            return False
        fields = [p for p in reply.split("\r\n") if p and not p.startswith(("*", "$"))]
        info = dict(zip(fields[::2], fields[1::2], strict=False))
        return info.get("num-slaves") == "1" and info.get("num-other-sentinels") == "2"

    def master_port(self) -> int | None:
        """The master every reachable sentinel agrees on, if it answers as a master."""
        answers = {s.master() for s in self.sentinels if s.process.poll() is None}
        if len(answers) != 1:
            return None
        (address,) = answers
        if address is None or role(address[1]) != "master":
            return None
        return address[1]

    def kill_master(self) -> int:
        """SIGKILL the current master; its port."""
        port = self.master_port()
        assert port is not None, "no agreed master to kill"
        (node,) = [n for n in self.nodes if n.port == port]
        node.stop()
        self.killed = node
        return port

    def wait_for_failover(self, old_port: int, within: float = 30.0) -> int:
        """Block until the sentinels agree on a new master that answers as one; its port."""

        def promoted() -> int | None:
            port = self.master_port()
            return port if port is not None and port != old_port else None

        return int(self._wait(promoted, within))

    def restore(self) -> None:
        """Start the killed node again on its port (empty); the sentinels demote it to a
        replica of the new master, as they would a rebooted host."""
        assert self.killed is not None
        self.killed.start()
        self.killed = None

    def wait_replicated(self, within: float = 30.0) -> None:
        """Until the current master has a replica in sync again."""

        def synced() -> bool:
            port = self.master_port()
            # "online", not merely connected: WAIT counts only replicas done with their sync.
            return port is not None and "state=online" in command(port, "INFO replication")

        self._wait(synced, within)

    @staticmethod
    def _wait(check, within: float = 15.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                value = check()
            except OSError:
                value = None
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"sentinel cluster: condition not reached within {within}s")

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.close()
        self._dir.cleanup()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
