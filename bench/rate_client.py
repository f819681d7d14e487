"""A constant-rate HTTP/1.1 load generator: the latency a client feels at ordinary load.

wrk keeps every connection busy (closed loop), so it measures a saturated server; wrk2's
constant-rate mode is not packaged in Debian. This sends ``--rate`` requests a second on a
fixed schedule (open loop: request *i* leaves at ``start + i / rate`` whether or not earlier
answers have arrived, on any idle keep-alive connection, or a new one), so a stall in the
target shows up as the latency of every request it delays instead of as fewer requests. Each
latency runs from the moment the request is written to the last byte of its body (the answer
must carry a Content-Length): the event loop's timer wakes up to a millisecond after a request
is due, and that lag is the client's, not the target's (``late`` counts requests that left more
than 2 ms after they were due). The process prints one JSON object.

    python bench/rate_client.py --port 8080 --path /app/ims/... [--rate 100] [--duration 10]
        [--header 'Authorization: Bearer ...']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time


class Exchange(asyncio.Protocol):
    """One keep-alive connection; one request in flight on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None
        self.buffer = bytearray()
        self.need = -1  # head + body bytes of the answer, once the head is in
        self.status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> asyncio.Future[int]:
        self.done = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.need = -1
        assert self.transport is not None
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            self.status = int(head.split(" ", 2)[1])
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            self.need = end + 4 + length
        if len(self.buffer) >= self.need and self.done is not None and not self.done.done():
            self.done.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection closed mid-answer"))


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    lines = [f"GET {args.path} HTTP/1.1", f"Host: 127.0.0.1:{args.port}", *args.header]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    idle: list[Exchange] = []
    latencies: list[float] = []
    errors = 0
    late = 0  # requests that left more than 2 ms after they were due (the client lagged)

    async def connection() -> Exchange:
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        _, conn = await loop.create_connection(Exchange, "127.0.0.1", args.port)
        return conn

    async def one(due: float) -> None:
        nonlocal errors, late
        if time.perf_counter() - due > 0.002:
            late += 1
        try:
            conn = await connection()
            sent = time.perf_counter()
            status = await conn.send(request)
        except (OSError, ConnectionError):
            errors += 1
            return
        latencies.append(time.perf_counter() - sent)
        if status != 200:
            errors += 1
        idle.append(conn)

    # Unmeasured warm-up: connections opened, caches filled.
    for _ in range(20):
        await one(time.perf_counter())
    latencies.clear()
    errors = late = 0
    total = int(args.rate * args.duration)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(due)))
    await asyncio.gather(*tasks)
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return {
        "requests": len(latencies),
        "errors": errors,
        "late": late,
        "rate": args.rate,
        "p50_ms": statistics.median(ordered) * 1000 if ordered else 0.0,
        "p90_ms": pct(90) if ordered else 0.0,
        "p99_ms": pct(99) if ordered else 0.0,
        "max_ms": ordered[-1] * 1000 if ordered else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (100)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (10)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
