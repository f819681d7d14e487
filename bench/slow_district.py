"""A slow district for ``bench/targets.py``: every answer takes ``--delay`` seconds (500 ms by
default, as real districts' rostering pages do), then the small users page.

Many requests wait at once, so what limits a gateway in front of it is how many concurrent
upstream exchanges it allows (a connection-pool cap, a slot queue), not CPU. An aiohttp
server (on uvloop when installed, so the district's own loop is not what the run measures),
keep-alive, no signature check (the test suite verifies signatures against the sandbox).

    python bench/slow_district.py --port 8091 --page users.json [--delay 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiohttp import web


def create_app(body: bytes, delay: float) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--page", required=True, help="file whose bytes every answer carries")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per answer (0.5)")
    args = parser.parse_args()
    loop = None
    try:
        import uvloop
    except ImportError:
        pass
    else:
        loop = uvloop.new_event_loop()
    web.run_app(
        create_app(Path(args.page).read_bytes(), args.delay),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        loop=loop,
    )


if __name__ == "__main__":
    main()
