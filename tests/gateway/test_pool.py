"""The keep-alive GET pool (``proxy.gateway.pool``) against a real socket server on loopback: the
head it writes is aiohttp's, connections are reused only when an answer was read to its end and
neither side asked to close, and every failure surfaces as the error class the gateway
translates (``proxy.gateway.forward.UPSTREAM_ERRORS``) exactly as it did aiohttp's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from yarl import URL

from proxy.errors import (
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamResetError,
    UpstreamTimeout,
)
from proxy.gateway import forward
from proxy.gateway.pool import KeepAlivePool
from tests.support import free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class Server:
    """Reads request heads, answers each with ``answer(head)``; counts connections."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.connections = 0
        self.closed = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                reply = self.answer(head)
                if reply is None:  # hang: never answer
                    await asyncio.sleep(3600)
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower():
                    return
        finally:
            writer.close()
            self.closed.set()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, target: str = "/ims/oneroster/v1p1/users?limit=5") -> str:
        return f"http://127.0.0.1:{self.port}{target}"


@pytest.fixture
async def pool() -> AsyncIterator[KeepAlivePool]:
    p = KeepAlivePool(max_line_size=1024, max_field_size=1024, max_headers=32)
    yield p
    await p.close()


async def get(pool: KeepAlivePool, url: str, headers=(), timeout: float = 5) -> bytes:
    with forward.UPSTREAM_ERRORS:
        response = await pool.get(url, list(headers), timeout)
        return await response.read()


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Accept", "application/json"), ("X-Request-Id", "r-1"), ("authorization", "OAuth x")],
        [("accept", "*/*"), ("X-Dup", "1"), ("X-Dup", "2"), ("X-Non-Ascii", "caf\u00e9")],
        [("Host", "district.example"), ("X-A", "1")],
    ],
)
@pytest.mark.parametrize(
    "target", ["/ims/oneroster/v1p1/users?limit=5", "/ims/a%2Fb?x=1&y=%20", "/", ""]
)
async def test_the_head_is_byte_for_byte_the_one_aiohttp_writes(pool, headers, target):
    async with Server(lambda head: OK) as server:
        url = f"http://127.0.0.1:{server.port}{target}"
        session = forward.new_session()
        try:
            response = await session.request(
                "GET", URL(url, encoded=True), headers=headers, allow_redirects=False
            )
            await response.read()
        finally:
            await session.close()
        assert await get(pool, url, headers) == b"hello"
    assert len(server.heads) == 2
    assert server.heads[1] == server.heads[0]


async def test_a_connection_is_reused_after_an_answer_read_to_its_end(pool):
    async with Server(lambda head: OK) as server:
        for _ in range(5):
            assert await get(pool, server.url()) == b"hello"
        assert server.connections == 1


async def test_connection_close_and_unread_answers_are_never_reused(pool):
    replies = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n" + b"x" * 4_000_000,
            OK,
        ]
    )
    async with Server(lambda head: next(replies)) as server:
        assert await get(pool, server.url()) == b"hello"
        with forward.UPSTREAM_ERRORS:
            response = await pool.get(server.url(), [], 5)
        assert response.status == 200
        assert response.content_length == 4_000_000
        response.release()  # the body was never read: this connection cannot carry another
        assert await get(pool, server.url()) == b"hello"
        assert server.connections == 3


async def test_a_district_that_closed_an_idle_connection_gets_a_fresh_one(pool):
    async with Server(lambda head: OK) as server:
        assert await get(pool, server.url()) == b"hello"
        idle = pool._origins[(f"http://127.0.0.1:{server.port}", True)].idle
        idle[0][1].transport.close()  # as if the district had closed it
        await asyncio.sleep(0.05)
        assert await get(pool, server.url()) == b"hello"
        assert server.connections == 2


async def test_a_reset_before_the_head_is_a_reset(pool):
    async with Server(lambda head: b"") as server:
        server.answer = lambda head: b"HTTP/1.1 200 OK\r\nConnection: close\r\n"  # head cut off
        with pytest.raises(UpstreamResetError):
            await get(pool, server.url())


async def test_no_listener_is_a_connect_error(pool):
    with pytest.raises(UpstreamConnectError):
        await get(pool, f"http://127.0.0.1:{free_port()}/x")


async def test_a_district_that_never_answers_is_a_timeout(pool):
    async with Server(lambda head: None) as server:
        with pytest.raises(UpstreamTimeout):
            await get(pool, server.url(), timeout=0.3)


async def test_a_malformed_answer_or_a_header_over_the_limit_is_a_bad_response(pool):
    async with Server(lambda head: b"HTTP/1.1 abc nonsense\r\n\r\n") as server:
        with pytest.raises(UpstreamBadResponse):
            await get(pool, server.url())
    long = b"HTTP/1.1 200 OK\r\nLink: <" + b"x" * 2000 + b">\r\nContent-Length: 0\r\n\r\n"
    async with Server(lambda head: long) as server:
        with pytest.raises(UpstreamBadResponse):
            await get(pool, server.url())


async def test_interim_answers_are_skipped_and_chunked_bodies_stream(pool):
    chunks = (
        b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (b"a" * 70000, b"b" * 3)) + b"0\r\n\r\n"
    )
    reply = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Total-Count: 2\r\n\r\n" + chunks
    )
    async with Server(lambda head: reply) as server:
        with forward.UPSTREAM_ERRORS:
            response = await pool.get(server.url(), [], 5)
            assert response.status == 200
            assert response.headers["X-Total-Count"] == "2"
            assert response.content_length is None
            seen = b""
            while chunk := await response.content.readany():
                seen += chunk
        response.release()
        assert seen == b"a" * 70000 + b"bbb"
        assert await get(pool, server.url()) == b"a" * 70000 + b"bbb"
        assert server.connections == 1


async def test_idle_connections_are_closed_after_keepalive():
    pool = KeepAlivePool(keepalive=0.1)
    try:
        async with Server(lambda head: OK) as server:
            assert await get(pool, server.url()) == b"hello"
            await asyncio.wait_for(server.closed.wait(), 10)
    finally:
        await pool.close()


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no CA signed, and its key (PEM files)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def test_tls_is_verified_unless_the_district_turns_it_off(pool, tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Server(lambda head: OK)
    server._server = await asyncio.start_server(server._handle, "127.0.0.1", 0, ssl=context)
    server.port = server._server.sockets[0].getsockname()[1]
    url = f"https://127.0.0.1:{server.port}/ims/oneroster/v1p1/users"
    try:
        # SECURITY: a certificate no trusted CA signed is refused by default...
        with pytest.raises(UpstreamConnectError, match="certificate"):
            with forward.UPSTREAM_ERRORS:
                await pool.get(url, [], 5)
        # ...and accepted only where the district's tls_verify = false says so.
        with forward.UPSTREAM_ERRORS:
            response = await pool.get(url, [], 5, verify=False)
            assert await response.read() == b"hello"
        assert server.heads[-1].startswith(b"GET /ims/oneroster/v1p1/users HTTP/1.1\r\n")
        # The unverified connection now idles in the pool: a verifying request never gets it.
        with pytest.raises(UpstreamConnectError, match="certificate"):
            with forward.UPSTREAM_ERRORS:
                await pool.get(url, [], 5)
    finally:
        await server.__aexit__()
