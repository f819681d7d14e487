"""Hostile input as properties (docs/http-api.md: a refusal, never a 500), against a real
proxy and two real sandbox districts, over raw sockets so that nothing between the generator and the
proxy tidies the bytes up:

* nothing outside ``/ims/oneroster/`` of the app's own district is ever requested upstream,
  however the path is encoded, dotted, slashed or padded;
* a scope decision is the same for every percent-encoding of one path;
* every refusal, from the proxy or the district, is an imsx payload, and none is a 500;
* no header is ever split: whatever bytes a header value holds, no extra header appears
  upstream or in the answer.

The servers run on an event loop in a background thread; hypothesis drives plain blocking
sockets from the test thread.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import socket
import threading
import unicodedata
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support import ALL_SCOPES, ProxyHarness, base_config

T = TypeVar("T")

A_BASE = "/district-a"
B_BASE = "/district-b"


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class World:
    port: int
    a: Any  # sandbox behind app-7 (acme, every scope) and app-8 (other, roster-core only)
    b: Any  # sandbox behind app-9 (acme): another district of the same vendor
    acme: str
    other: str

    def seen(self) -> tuple[int, int]:
        return len(self.a.recorded), len(self.b.recorded)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from proxy.sandbox import SandboxOptions
    from proxy.sandbox.server import start_sandbox

    tmp = tmp_path_factory.mktemp("hostile")
    loop = LoopThread()

    async def setup() -> tuple[World, ProxyHarness, list[Any]]:
        a = await start_sandbox(SandboxOptions(base_path=A_BASE))
        b = await start_sandbox(SandboxOptions(base_path=B_BASE))
        doc = base_config(tmp, a)
        doc["districts"]["shelbyville"] = {"base_url": b.base_url}
        doc["connections"]["app-9"] = {"vendor": "acme", "district": "shelbyville",
                                       "key": b.key, "secret": b.secret,
                                       "scopes": list(ALL_SCOPES)}  # fmt: skip
        harness = await ProxyHarness(tmp, doc).start()
        world = World(
            port=harness.running.gateway_port,  # type: ignore[union-attr]
            a=a,
            b=b,
            acme=await harness.token("acme"),
            other=await harness.token("other"),
        )
        return world, harness, [a, b]

    world, harness, sandboxes = loop.run(setup())
    yield world

    async def teardown() -> None:
        await harness.stop()
        for sandbox in sandboxes:
            await sandbox.close()

    loop.run(teardown())
    loop.stop()


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header_names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}


def send(port: int, raw: bytes) -> Reply:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(n.strip(), v.strip()) for n, _, v in (x.partition(":") for x in lines[1:])]
    reply = Reply(int(lines[0].split(" ", 2)[1]), headers, body)
    if any(n.lower() == "transfer-encoding" for n, _ in headers):
        reply.body = dechunk(body)
    return reply


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return out


def request(method: str, target: bytes, token: str, *extra: bytes) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: proxy.test",
             f"Authorization: Bearer {token}".encode(), b"Connection: close", *extra]  # fmt: skip
    return b"\r\n".join(lines) + b"\r\n\r\n"


def assert_refusal_shape(reply: Reply) -> None:
    assert reply.status != 500 and reply.status < 600
    if reply.status >= 400:
        data = json.loads(reply.body)
        assert data["imsx_codeMajor"] == "failure", data
        assert data["imsx_severity"] == "error"
        field = data["imsx_CodeMinor"]["imsx_codeMinorField"][0]
        assert field["imsx_codeMinorFieldName"] == "TargetEndSystem"


# -- an independent oracle for "inside /ims/oneroster/ of this district" -------------------------


def _remove_dots(path: str) -> str:
    normal = posixpath.normpath(path)
    return normal + ("/" if path.endswith("/") and normal != "/" else "")


def _lenient(segment: str) -> str:
    """A segment as Tomcat (``;params`` dropped) and Windows (trailing dots and spaces
    trimmed, so ``...`` and ``.. `` mean ``..``) read it."""
    bare = segment.split(";")[0]
    trimmed = bare.rstrip(". +")
    if not trimmed and len(bare.strip(" +")) >= 2:
        return ".."
    return trimmed or bare


def _readings(path: str) -> set[str]:
    """Every way a district server might read ``path``: decoded up to four times, backslashes
    as slashes, ``;params`` dropped, NFKC folded, trailing dots/spaces trimmed."""
    out: set[str] = set()
    current = path
    for _ in range(5):
        for variant in (current, unicodedata.normalize("NFKC", current)):
            variant = variant.replace("\\", "/")
            out.add(variant)
            out.add("/".join(_lenient(seg) for seg in variant.split("/")))
        current = unquote(current, errors="replace")
    return out


def confined(raw_path: str, base: str) -> bool:
    prefix = f"{base}/ims/oneroster/"
    path = raw_path.split("?", 1)[0]
    if not path.startswith(prefix):
        return False
    return all(_remove_dots(reading).startswith(prefix) for reading in _readings(path))


# -- property 1: confinement ----------------------------------------------------------------------

PIECES = [
    "app-7", "app-9", "app-8", "ims", "oneroster", "v1p1", "rostering", "v1p2", "users", "orgs",
    "gradebook", "..", ".", "...", "%2e", "%2E%2e", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%5C",
    "\\", "", ";x", "..;", "..;x", "%252e%252e", "%252f", "%25252e", "%c0%ae%c0%ae", "%ef%bc%8f",
    "%ef%bc%8e%ef%bc%8e", "%u002e", "~", "%00", "%0a", "%0d%0a", "%20", "..%20", "..%00",
    ".%252e", "%2e.", "admin", "metrics", "applications", "oauth",
]  # fmt: skip

segments = st.one_of(
    st.sampled_from(PIECES),
    st.text(alphabet="./\\%;2eEfF5cC0a", min_size=1, max_size=6),
)
rests = st.lists(segments, max_size=7).map("/".join)
# Mostly harmless paths with one hostile piece somewhere, so that many reach the district.
near_valid = st.tuples(
    st.sampled_from(["v1p1/", "rostering/v1p2/", "v1p1/orgs/", "gradebook/v1p2/"]),
    st.sampled_from(["users", "orgs", "schools", "classes", "lineItems", "x.y", "a~b", "%75sers"]),
    st.just("")
    | st.just("/x")
    | st.sampled_from(["", "/", "/x", "/%2e", "/.%2e", "/..", "/%2e%2e/users", "/a;b", "/%2F",
                       "/%5c", "/%c0%af", "/%252e%252e", "/%ef%bc%8f", "/.x", "/x.", "/x..y"]),
).map("".join)  # fmt: skip
paths = st.one_of(
    near_valid.map(lambda rest: "/app-7/ims/oneroster/" + rest),
    near_valid.map(lambda rest: "/app-7/ims/oneroster/" + rest),
    near_valid.map(lambda rest: "/app-9/ims/oneroster/" + rest),
    rests.map(lambda rest: "/app-7/ims/oneroster/" + rest),
    rests.map(lambda rest: "/app-7/" + rest),
    rests.map(lambda rest: "/" + rest),
)
queries = st.one_of(
    st.just(""),
    st.text(alphabet="abc=&%20dD/.?#;", max_size=12).map(lambda q: "?" + q),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=paths, query=queries)
def test_nothing_outside_the_apps_own_oneroster_tree_is_requested(world, path, query):
    target = (path + query).encode("latin-1")
    a_before, b_before = world.seen()
    reply = send(world.port, request("GET", target, world.acme))
    assert_refusal_shape(reply)
    new_a = world.a.recorded[a_before:]
    new_b = world.b.recorded[b_before:]
    first = path.split("/")[1] if path.count("/") > 1 else ""
    if first != "app-7":
        assert new_a == [], f"{target!r} reached district A as {[r.path for r in new_a]}"
    if first != "app-9":
        assert new_b == [], f"{target!r} reached district B as {[r.path for r in new_b]}"
    for rec in new_a:
        assert confined(rec.path, A_BASE), f"{target!r} -> {rec.path!r}"
    for rec in new_b:
        assert confined(rec.path, B_BASE), f"{target!r} -> {rec.path!r}"
    if reply.status == 400:
        assert new_a == [] and new_b == []
    event("forwarded" if new_a or new_b else f"refused {reply.status}")


# -- property 2: scope decisions do not depend on the encoding -----------------------------------

OPERATIONS = [
    ("GET", "v1p1/users"),
    ("GET", "v1p1/demographics"),
    ("GET", "v1p1/classes/cls-1/students"),
    ("GET", "v1p1/schools/sch-1/classes"),
    ("GET", "v1p1/lineItems"),
    ("GET", "v1p1/results"),
    ("GET", "rostering/v1p2/users"),
    ("GET", "rostering/v1p2/demographics/d-1"),
    ("GET", "gradebook/v1p2/lineItems"),
    ("GET", "resources/v1p2/resources"),
    ("GET", "v1p1/courses"),
    ("PUT", "v1p1/lineItems/li-1"),
    ("DELETE", "v1p1/results/r-1"),
    ("POST", "gradebook/v1p2/results"),
    ("PATCH", "v1p1/users"),
]
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]")


@st.composite
def encodings(draw: st.DrawFn) -> tuple[str, str, str]:
    method, rest = draw(st.sampled_from(OPERATIONS))
    out = []
    for ch in rest:
        if _UNRESERVED.match(ch) and draw(st.booleans()):
            escape = f"%{ord(ch):02x}"
            out.append(escape.upper() if draw(st.booleans()) else escape)
        else:
            out.append(ch)
    return method, rest, "".join(out)


_plain: dict[tuple[str, str], tuple[int, bool]] = {}


def decision(world: World, method: str, rest: str) -> tuple[int, bool]:
    """(status, reached the district) for app-8, which shares only roster-core.readonly."""
    a_before, _ = world.seen()
    body = (
        b"Content-Length: 2\r\nContent-Type: application/json" if method in ("PUT", "POST") else b""
    )
    raw = request(method, f"/app-8/ims/oneroster/{rest}".encode(), world.other,
                  *([body] if body else []))  # fmt: skip
    if body:
        raw += b"{}"
    reply = send(world.port, raw)
    assert_refusal_shape(reply)
    return reply.status, len(world.a.recorded) > a_before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=encodings())
def test_scope_decision_is_the_same_for_every_encoding(world, case):
    method, plain, encoded = case
    if (method, plain) not in _plain:
        _plain[(method, plain)] = decision(world, method, plain)
    expected = _plain[(method, plain)]
    assert decision(world, method, encoded) == expected, (method, plain, encoded)


def test_scope_oracle_is_not_trivial(world):
    """The property above is only worth something if both outcomes occur."""
    assert decision(world, "GET", "v1p1/users") == (200, True)
    assert decision(world, "GET", "v1p1/demographics") == (403, False)
    assert decision(world, "GET", "v1p1/%64emographics") == (403, False)


# -- property 3 (with 1 and 2): refusals are imsx; property 4: no header is split -----------------

_SPLITTERS = [b"\r", b"\n", b"\r\n", b"\x00", b"\x85", b"\xe2\x80\xa8", b"\x0b", b"\x0c",
              b"%0d%0a", b"\\r\\n", b"&#13;&#10;", b"\t", b" "]  # fmt: skip
header_values = st.lists(
    st.one_of(st.sampled_from(_SPLITTERS), st.binary(min_size=1, max_size=4),
              st.sampled_from([b"X-Injected: 1", b"X-Injected:1", b"x-injected: yes"])),
    min_size=1, max_size=6,
).map(b"".join)  # fmt: skip
header_names = st.sampled_from([b"X-Custom", b"X-Request-Id", b"Accept", b"X-Forwarded-Host",
                                b"Link", b"If-None-Match", b"User-Agent"])  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=header_names, value=header_values, query=queries)
def test_no_header_is_ever_split(world, name, value, query):
    if b"\r\n" in value:
        # A raw CRLF ends the header line on the wire itself: that is the client sending two
        # headers, not a proxy splitting one. What matters is what comes after it.
        value = value.replace(b"\r\n", b"\r\n ")  # obsolete line folding: must not split
    a_before, _ = world.seen()
    target = f"/app-7/ims/oneroster/v1p1/orgs{query}".encode()
    reply = send(world.port, request("GET", target, world.acme, name + b": " + value))
    assert_refusal_shape(reply)
    assert "x-injected" not in reply.header_names()
    for rec in world.a.recorded[a_before:]:
        names = [n.lower() for n, _ in rec.headers]
        assert "x-injected" not in names, rec.headers
        assert names.count(name.decode().lower()) <= 1
        for n, v in rec.headers:
            assert "\r" not in v and "\n" not in v and "\x00" not in v, (n, v)
    rid = [v for n, v in reply.headers if n.lower() == "x-request-id"]
    assert len(rid) == 1 and re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", rid[0])
