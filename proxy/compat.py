"""Every use of a dependency's private API, in one place, each checked before it is trusted.

The proxy reaches below the public surface of three dependencies. Each access is listed here
with the versions it was tested with, what happens outside them, and why it is worth it (the
figures are ``bench/icount.py`` instructions per small-page request and the CPU split of
``bench/breakdown.py``, docs/layout.md "bench"). ``tests/test_compat.py`` holds one test per
access that fails when the private API changes shape, so an upgrade is judged there first.

aiohttp (tested: 3.14.4 and 3.14.5, the floor CI installs and the current release; pinned
``<3.15`` in pyproject.toml). Outside the tested range the
proxy refuses to start (``DependencyError``, naming the version and the range): these
accesses sit on the request path and in the connection handler, where a silent change would
be a wrong answer, not a slow one.

* ``ResponseHandler`` (``aiohttp.client_proto``): ``proxy.gateway.pool`` drives aiohttp's own
  response protocol (C parser, head limits, read timeout, flow control) without
  ``ClientSession.request``. Worth it: 827k -> 644k instructions per request, and 81 -> 41 µs
  of CPU for the district client (bench/README.md "Instructions per request").
* ``RequestHandler`` (``aiohttp.web_protocol``) subclassed, with ``_handle_request``
  overridden and the reading-paused flags read: ``proxy.gateway.inbound_limits``. Worth it:
  without it a parser refusal is aiohttp's plain-text 400 outside every middleware and a
  stalled request body holds a connection for ever (docs/http-api.md statuses 414/431/408);
  there is no public hook for either. The override hands back aiohttp's own coroutine for a
  request with no body, so the common GET pays nothing for it.
* ``bad_method_line``: the request line llhttp quotes in ``BadHttpMethod``'s text, read back
  with ``ast.literal_eval``, so an unknown method is 403 and not 400 (docs/http-api.md). There
  is no structured field for it; anything that does not parse stays a 400.
* ``disable_connection_retry``: ``ClientSession._retry_connection = False`` (aiohttp's own
  test client sets it). Worth it: aiohttp otherwise re-sends a request on a stale keep-alive
  connection, and a PUT/POST/DELETE must never reach the district twice.

prometheus-client (tested: 0.19.0, the floor CI installs, and 0.26.0; pinned ``<0.27``).
Outside the tested range, or when the fields are not there, ``HISTOGRAM_FOLD`` is false and
``proxy.metrics.Tally`` updates the metrics through the public API on every request instead
(still correct, only slower).

* ``histogram_bounds`` / ``histogram_add``: a histogram child's ``_upper_bounds``, ``_sum``
  and ``_buckets``, so observations counted locally are added at collection time. Worth it:
  the locally counted metrics (with the work moved after the write) took 644k -> 632k
  instructions per request, metrics 4.3 -> 2.6 µs (bench/README.md).

* ``forget_built_middlewares``: aiohttp keeps each application's built middleware chain in
  an ``lru_cache`` of 1,024 entries keyed by the application, so every application a process
  ever ran stays alive with its event loop and whatever it references. The proxy builds its
  applications once; a process that starts hundreds (the test suite: each test's proxy and
  sandbox) clears it after each, which took the quick loop's peak RSS from 3.0 GB down.

argparse (standard library; its ``_actions``, ``_option_string_actions`` and
``_SubParsersAction`` have not changed shape since Python 3.2; tested on 3.11 and the image's
3.12). Checked by shape at import: a Python without them fails at start with
``DependencyError``.

* ``subparsers`` / ``option_action`` / ``SubParsersAction``: ``proxy.cli`` adds
  ``--log-format`` after every subcommand and reads ``--config`` from ``ORP_CONFIG`` on every
  command that has it (docs/commands.md); argparse has no public way to walk its sub-parsers
  or find an option's action.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

from aiohttp import ClientSession, web_app
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler

__all__ = [
    "HISTOGRAM_FOLD",
    "DependencyError",
    "RequestHandler",
    "ResponseHandler",
    "SubParsersAction",
    "bad_method_line",
    "disable_connection_retry",
    "forget_built_middlewares",
    "histogram_add",
    "histogram_bounds",
    "option_action",
    "subparsers",
]

# The [from, to) release ranges each group of accesses was tested with.
AIOHTTP_TESTED = ((3, 14), (3, 15))
PROMETHEUS_TESTED = ((0, 19), (0, 27))


class DependencyError(RuntimeError):
    """A dependency is outside the versions the proxy's private accesses were tested with."""


def release(text: str) -> tuple[int, int]:
    """``"3.14.5"`` -> ``(3, 14)``; a pre-release suffix on the minor is ignored."""
    parts = text.split(".")
    minor = "".join(c for c in (parts[1] if len(parts) > 1 else "0") if c.isdigit()) or "0"
    return int(parts[0]), int(minor)


def tested(text: str, tested_range: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    low, high = tested_range
    return low <= release(text) < high


def require_aiohttp(installed: str) -> None:
    if not tested(installed, AIOHTTP_TESTED):
        low, high = AIOHTTP_TESTED
        raise DependencyError(
            f"aiohttp {installed} is installed; the proxy uses its internals and was tested with "
            f">={low[0]}.{low[1]},<{high[0]}.{high[1]} (install that range)"
        )
    missing = [
        name
        for owner, name in (
            (ResponseHandler, "set_response_params"),
            (ResponseHandler, "start_timeout"),
            (ResponseHandler, "should_close"),
            (RequestHandler, "_handle_request"),
            (RequestHandler, "handle_error"),
        )
        if not hasattr(owner, name)
    ]
    if missing:
        raise DependencyError(f"aiohttp {installed} lacks what the proxy uses: {missing}")


require_aiohttp(version("aiohttp"))


# --- aiohttp client: the persistent-connection retry ------------------------------------------


def disable_connection_retry(session: ClientSession) -> None:
    """Switch off aiohttp's silent re-send of a request on a stale keep-alive connection."""
    if not hasattr(session, "_retry_connection"):
        raise DependencyError("aiohttp changed: cannot disable the persistent-connection retry")
    session._retry_connection = False


def forget_built_middlewares() -> None:
    """Drop aiohttp's cache of built middleware chains (and the applications it holds)."""
    web_app._cached_build_middleware.cache_clear()


# --- aiohttp server: the request line of an unknown method ------------------------------------


def bad_method_line(exc: BadHttpMethod) -> bytes | None:
    """The request line llhttp quoted (as a bytes literal) in a ``BadHttpMethod``, or None."""
    text = str(exc.message)
    start = text.find("b'")
    if not text.startswith("Invalid method encountered") or start < 0:
        return None
    try:
        line = ast.literal_eval(text[start:].split("\n", 1)[0].strip())
    except (SyntaxError, ValueError):
        return None
    return line if isinstance(line, bytes) else None


# --- prometheus-client: histogram fields --------------------------------------------------------


def _histogram_fields() -> bool:
    if not tested(version("prometheus-client"), PROMETHEUS_TESTED):
        return False
    from prometheus_client import CollectorRegistry, Histogram

    child = Histogram("compat_probe", "", registry=CollectorRegistry(), buckets=(1.0,))
    return all(hasattr(child, name) for name in ("_upper_bounds", "_sum", "_buckets"))


HISTOGRAM_FOLD = _histogram_fields()


def histogram_bounds(child: Any) -> list[float]:
    """The upper bounds of a histogram child's buckets, ending with +Inf."""
    bounds: list[float] = child._upper_bounds
    return bounds


def histogram_add(child: Any, total: float, counts: list[float]) -> None:
    """Add locally counted observations: their sum and one count per bucket (non-cumulative,
    as ``Histogram.observe`` keeps them)."""
    child._sum.inc(total)
    for bucket, n in zip(child._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


# --- argparse ---------------------------------------------------------------------------------

SubParsersAction = argparse._SubParsersAction


def subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The sub-parsers directly below ``parser``."""
    for action in parser._actions:
        if isinstance(action, SubParsersAction):
            yield from action.choices.values()


def option_action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    """The action of an option string (``--config``), or None."""
    return parser._option_string_actions.get(flag)


def _argparse_shape() -> None:
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--probe")
    ok = (
        isinstance(getattr(probe, "_actions", None), list)
        and isinstance(getattr(probe, "_option_string_actions", None), dict)
        and issubclass(SubParsersAction, argparse.Action)
    )
    if not ok:
        raise DependencyError("this Python's argparse lacks what the proxy's CLI uses")


_argparse_shape()
