"""The sandbox district's middlewares, in the order a request meets them: record, faults, imsx.

docs/sandbox.md: ``_record`` keeps each request as received (``RECORDED``),
``_faults`` applies the faults set at run time (hangs, delays, 429/503 with ``Retry-After``,
dropped keep-alive, slow or reset bodies), ``_errors`` turns every refusal into the imsx
payload a district answers with. The stream helpers apply the same faults to answers written
chunk by chunk.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web

from proxy.sandbox.auth import AuthError
from proxy.sandbox.district import DistrictError
from proxy.sandbox.query import QueryError
from proxy.sandbox.state import (
    CONTEXT,
    FAULTS,
    OPTIONS,
    RECORDED,
    Context,
    RecordedRequest,
    imsx_response,
)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _record(request: web.Request, handler: _Handler) -> web.StreamResponse:
    body = await request.read()
    entry = RecordedRequest(
        method=request.method,
        path=request.raw_path,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        body=body,
    )
    recorded = request.app[RECORDED]
    limit = request.app[OPTIONS].record_limit
    if limit is None or limit > 0:
        recorded.append(entry)
        if limit is not None and len(recorded) > limit:
            del recorded[: len(recorded) - limit // 2]
    request[CONTEXT] = Context(entry)
    response = await handler(request)
    entry.status = response.status
    return response


async def _hang_forever() -> None:
    await asyncio.Event().wait()


@web.middleware
async def _faults(request: web.Request, handler: _Handler) -> web.StreamResponse:
    faults = request.app[FAULTS]
    path = request.raw_path
    over = faults.reset_heads_over
    if over is not None and sum(len(k) + len(v) + 4 for k, v in request.raw_headers) > over:
        reset_connection(request)
        return web.Response(status=400)  # never written: the connection is gone
    if any(p == "*" or p in path for p in faults.hang_paths):
        await _hang_forever()
    if faults.delay_head:
        await asyncio.sleep(faults.delay_head)
    if faults.status_503_retry_after is not None and faults.take("status_503"):
        return imsx_response(
            503, "server_busy", "The district is busy; retry later.",
            {"Retry-After": str(faults.status_503_retry_after)},
        )  # fmt: skip
    if faults.status_429_retry_after is not None and faults.take("status_429"):
        return imsx_response(
            429, "server_busy", "Too many requests; slow down.",
            {"Retry-After": str(faults.status_429_retry_after)},
        )  # fmt: skip
    response = await handler(request)
    if response.prepared:
        return response  # streamed responses apply their faults while streaming
    apply_connection_faults(request, response)
    if isinstance(response, web.Response) and response.body is not None:
        reset = faults.reset_mid_body and faults.take("reset_mid_body")
        if reset or faults.slow_body:
            return await _send_with_faults(request, response, reset=reset)
    return response


def apply_connection_faults(request: web.Request, response: web.StreamResponse) -> None:
    faults = request.app[FAULTS]
    if faults.close_keepalive:
        response.force_close()  # announces "Connection: close"
    elif faults.drop_keepalive and request.protocol is not None:
        # Closes once this response is written, while the response still claims keep-alive.
        request.protocol.close()


def reset_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER 0: close with RST, as a crashed district or a middlebox does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _send_with_faults(
    request: web.Request, response: web.Response, *, reset: bool
) -> web.StreamResponse:
    body = bytes(response.body)  # type: ignore[arg-type]
    stream = web.StreamResponse(
        status=response.status, reason=response.reason, headers=response.headers
    )
    stream.content_length = len(body)
    if response.keep_alive is False:
        stream.force_close()
    await stream.prepare(request)
    cut = max(1, len(body) // 2) if reset else len(body)
    await write_chunks(request, stream, iter([body[:cut]]))
    if reset:
        await asyncio.sleep(0.05)  # let the partial body leave before the reset
        reset_connection(request)
        return stream
    await stream.write_eof()
    return stream


async def write_chunks(
    request: web.Request, stream: web.StreamResponse, chunks: Iterator[bytes]
) -> None:
    """Write body chunks with backpressure, slowly if the ``slow_body`` fault is set."""
    slow = request.app[FAULTS].slow_body
    for chunk in chunks:
        if slow:
            for start in range(0, len(chunk), 1024):
                await stream.write(chunk[start : start + 1024])
                await asyncio.sleep(slow)
        else:
            await stream.write(chunk)


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DistrictError as exc:
        return imsx_response(exc.status, exc.code_minor, exc.description)
    except QueryError as exc:
        return imsx_response(400, exc.code_minor, exc.description)
    except AuthError as exc:
        code = "unauthorisedrequest" if exc.status == 401 else "forbidden"
        return imsx_response(exc.status, code, exc.description, {"WWW-Authenticate": exc.challenge})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return imsx_response(
            exc.status, "unknownobject" if exc.status == 404 else "invaliddata", exc.reason
        )


#: In the order a request meets them.
MIDDLEWARES = (_record, _faults, _errors)
