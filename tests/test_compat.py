"""proxy.compat: each private API the proxy uses still has the shape the proxy relies on.

One test per access (docs/layout.md, compat.py): an upgrade of aiohttp, prometheus-client or
Python that renames or reshapes one fails here, by name, before it fails on the request path.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
from bisect import bisect_left
from typing import Any

import aiohttp
import pytest
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.http_parser import HttpRequestParser
from prometheus_client import CollectorRegistry, Histogram

from proxy import compat


def test_the_installed_versions_are_the_tested_ones() -> None:
    from importlib.metadata import version

    assert compat.tested(version("aiohttp"), compat.AIOHTTP_TESTED)
    assert compat.tested(version("prometheus-client"), compat.PROMETHEUS_TESTED)
    assert compat.HISTOGRAM_FOLD


def test_an_untested_aiohttp_is_a_clear_startup_error() -> None:
    with pytest.raises(compat.DependencyError, match=r"aiohttp 3\.15\.0 .*>=3\.14,<3\.15"):
        compat.require_aiohttp("3.15.0")
    with pytest.raises(compat.DependencyError, match=r"aiohttp 3\.13\.2"):
        compat.require_aiohttp("3.13.2")
    compat.require_aiohttp("3.14.0rc1")  # a pre-release of the tested minor is in range


def test_response_handler_takes_what_the_pool_hands_it() -> None:
    # proxy.gateway.pool: ResponseHandler(loop), set_response_params(...), start_timeout(),
    # read(), should_close, is_connected(), close(), transport.
    params = inspect.signature(compat.ResponseHandler.set_response_params).parameters
    for name in (
        "skip_payload",
        "read_until_eof",
        "auto_decompress",
        "read_timeout",
        "read_bufsize",
        "max_line_size",
        "max_field_size",
        "max_headers",
    ):
        assert name in params, name
    loop = asyncio.new_event_loop()
    try:
        proto = compat.ResponseHandler(loop)
        assert proto.should_close is False or proto.should_close is True
        assert proto.is_connected() is False
        assert proto.transport is None
        assert inspect.iscoroutinefunction(proto.read)
        assert callable(proto.start_timeout)
    finally:
        loop.close()


def test_request_handler_handle_request_has_the_overridden_signature() -> None:
    # proxy.gateway.inbound_limits overrides _handle_request(request, start_time,
    # request_handler) and reads _reading_paused / _buffer_paused / _loop.
    params = list(inspect.signature(compat.RequestHandler._handle_request).parameters)
    assert params == ["self", "request", "start_time", "request_handler"]
    for name in ("_reading_paused", "_buffer_paused", "_loop", "max_line_size", "max_field_size"):
        assert name in compat.RequestHandler.__slots__ or hasattr(compat.RequestHandler, name), name
    params = list(inspect.signature(compat.RequestHandler.handle_error).parameters)
    assert params[:5] == ["self", "request", "status", "exc", "message"]


def _parse_error(data: bytes) -> BaseException:
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParser(
            protocol=object(),  # type: ignore[arg-type]
            loop=loop,
            limit=2**16,
            max_line_size=8190,
            max_field_size=8190,
        )
        with pytest.raises(Exception) as info:
            parser.feed_data(data)
        return info.value
    finally:
        loop.close()


def test_llhttp_still_quotes_an_unknown_method_line() -> None:
    exc = _parse_error(b"FROB /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(exc, BadHttpMethod)
    assert compat.bad_method_line(exc) == b"FROB /x HTTP/1.1"
    junk = _parse_error(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
    if isinstance(junk, BadHttpMethod):
        line = compat.bad_method_line(junk)
        assert line is None or len(line.split(b" ")) != 3


async def test_the_session_retry_switch_is_still_there() -> None:
    async with aiohttp.ClientSession() as session:
        assert session._retry_connection is True  # aiohttp's default, the attribute we flip
        compat.disable_connection_retry(session)
        assert session._retry_connection is False


def test_histogram_fields_fold_to_what_observe_counts() -> None:
    values = [0.001, 0.05, 0.05, 0.3, 2.0, 99.0]
    bounds = (0.01, 0.1, 1.0, 10.0)
    observed = Histogram("h", "", registry=(one := CollectorRegistry()), buckets=bounds)
    folded = Histogram("h", "", registry=(two := CollectorRegistry()), buckets=bounds)
    for v in values:
        observed.observe(v)
    upper = compat.histogram_bounds(folded)
    assert upper == [*bounds, float("inf")]
    counts = [0.0] * len(upper)

    for v in values:
        counts[bisect_left(upper, v)] += 1
    compat.histogram_add(folded, sum(values), counts)

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert samples(one) == samples(two)


def test_argparse_subparsers_and_option_actions() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    assert isinstance(commands, compat.SubParsersAction)
    child = commands.add_parser("serve")
    child.add_argument("--config")
    assert list(compat.subparsers(parser)) == [child]
    action = compat.option_action(child, "--config")
    assert action is not None and action.dest == "config"
    assert compat.option_action(child, "--nothing") is None


def test_outside_the_tested_prometheus_tally_uses_the_public_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxy import metrics

    monkeypatch.setattr(compat, "HISTOGRAM_FOLD", False)
    tally = metrics.Tally(direct=False)
    child = Histogram("h", "", registry=(registry := CollectorRegistry()), buckets=(1.0,))
    tally.observe(child, 0.5)
    # Counted at once, with no fold: the private fields are never written.
    assert registry.get_sample_value("h_count") == 1
    assert not tally._observed


async def test_aiohttp_still_caches_middleware_chains_by_application() -> None:
    # What forget_built_middlewares is for: aiohttp's cache keeps a finished application alive
    # (with its loop and data) until it is cleared.
    import gc
    import weakref

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    @web.middleware
    async def passthrough(request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    compat.forget_built_middlewares()
    app = web.Application(middlewares=[passthrough])
    app.router.add_get("/", hello)
    async with TestClient(TestServer(app)) as client:
        async with client.get("/") as resp:
            assert resp.status == 200
    gone = weakref.ref(app)
    del app, client
    gc.collect()
    assert gone() is not None, "aiohttp no longer holds finished applications"
    compat.forget_built_middlewares()
    gc.collect()
    assert gone() is None
