"""The ceiling of our stack: a bare aiohttp pass-through forwarder (bench/README.md).

No auth, no scope check, no signing, no metrics, no log: an aiohttp server whose one handler
sends each request to the upstream with an aiohttp ``ClientSession`` and streams the answer
back chunk by chunk (a small page whole, with its head, in one write), as the proxy
does. Whatever the proxy costs beyond this is the price of its own work.
``/<appId>/ims/oneroster/...`` goes to ``<upstream>/ims/oneroster/...``.

    python bench/bare_forwarder.py --port 8081 --upstream http://127.0.0.1:8090
        [--chunked] [--authorization VALUE] [--uvloop]

``--chunked`` is the baseline of ``bench/targets.py``: every answer, small or not, copied with
``iter_chunked(256 * 1024)`` into a ``StreamResponse`` (the one-write shortcut for small pages
is the proxy's own gain, not the baseline's). ``--authorization`` sends one static header
upstream (what a forwarder with a fixed credential does instead of signing), ``--uvloop`` runs
it on uvloop.
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web
from yarl import URL

HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
SMALL_BODY = 64 * 1024


def create_app(
    upstream: str, *, chunked: bool = False, authorization: str | None = None
) -> web.Application:
    async def forward(request: web.Request) -> web.StreamResponse:
        rest = request.raw_path.split("/", 2)[2]  # drop the appId segment
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in HOP and not (authorization and k.lower() == "authorization")
        ]
        if authorization:
            headers.append(("Authorization", authorization))
        body = request.content if request.body_exists else None
        async with session.request(
            request.method,
            URL(f"{upstream}/{rest}", encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as up:
            out = [(k, v) for k, v in up.headers.items() if k.lower() not in HOP]
            if chunked:
                response = web.StreamResponse(status=up.status, reason=up.reason)
                for name, value in up.headers.items():
                    if name.lower() not in HOP or name.lower() == "content-length":
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in up.content.iter_chunked(256 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response
            if up.content_length is not None and up.content_length <= SMALL_BODY:
                # Same as the proxy: a small page goes out with its head in one write.
                small = web.Response(status=up.status, reason=up.reason, body=await up.read())
                for name, value in out:
                    small.headers.add(name, value)
                return small
            response = web.StreamResponse(status=up.status, reason=up.reason)
            for name, value in up.headers.items():
                if name.lower() not in HOP or name.lower() == "content-length":
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def client(app: web.Application):  # type: ignore[no-untyped-def]
        nonlocal session
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=30),
        )
        yield
        await session.close()

    session: aiohttp.ClientSession
    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8090")
    parser.add_argument("--chunked", action="store_true", help="no one-write shortcut")
    parser.add_argument("--authorization", help="a static Authorization header to send")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    loop = None
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(
        create_app(
            args.upstream.rstrip("/"), chunked=args.chunked, authorization=args.authorization
        ),
        loop=loop,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )
