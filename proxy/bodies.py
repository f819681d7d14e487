"""Reading a bounded body from an aiohttp stream (a leaf: the gateway, the vendor API, the OAuth2
token client and the check probes all read bodies they must not hold unbounded)."""

from __future__ import annotations

import aiohttp


async def read_up_to(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """At most ``limit`` bytes of ``stream``, read to its end if it is shorter. ``read(n)``
    alone answers with whatever has arrived, so a body sent in pieces would be cut short;
    callers that must refuse an oversized body ask for one byte more than they accept."""
    data = b""
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data
