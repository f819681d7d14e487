"""Every ``oneroster_proxy_*`` Prometheus collector (docs/metrics.md), on an injected registry.

Label values are bounded, so a scanner cannot grow the series count: ``resource`` is a
collection name from ``proxy.scopes`` or ``other``; ``vendor``/``district`` come from the
config, never from the request, and are ``-`` when the request never got that far (unknown
token, unknown appId); ``method`` is one of the HTTP methods below or ``other``; ``code`` is a
three-digit status.

One metric beyond the documented list:
``connection_expiry_timestamp_seconds{app,district}``, the end of each connection's ``expires`` day
(UTC) as a Unix time, set from the config at start and on
every reload (and for store connections from the store at scrape time), so an alert can fire
30 days before a district connection lapses (``config/prometheus-alerts.yml``). Connections
without ``expires`` have no series.
And, beside the documented ``check_ok`` and ``check_timestamp_seconds``,
``check_failed_twice{app,district}``: 1 when the two newest background checks both failed, the
alert's condition, which a gauge of the newest result alone cannot express whatever the
interval.
"""

from __future__ import annotations

import contextlib
import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy import compat
from proxy.activity import Activity

if TYPE_CHECKING:
    from proxy.config import Config

PREFIX = "oneroster_proxy_"
# A proxy's latencies: from a cached, local answer (~1 ms) to a slow district page (30 s).
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
)
OTHER = "other"
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def method_label(method: str) -> str:
    """The ``method`` label: a standard HTTP method, or ``other``."""
    # SECURITY: aiohttp accepts any token as a method; each distinct one would be a new series.
    return method if method in KNOWN_METHODS else OTHER


def code_label(code: str) -> str:
    return code if len(code) == 3 and code.isdigit() else OTHER


class _RequestCounter(Counter):
    """``requests_total`` whose ``method`` and ``code`` labels are bounded whoever calls it."""

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any:
        if labelvalues and len(labelvalues) == 5:
            vendor, district, resource, method, code = labelvalues
            labelvalues = (
                vendor,
                district,
                resource,
                method_label(str(method)),
                code_label(str(code)),
            )
        if "method" in labelkwargs:
            labelkwargs["method"] = method_label(str(labelkwargs["method"]))
        if "code" in labelkwargs:
            labelkwargs["code"] = code_label(str(labelkwargs["code"]))
        return super().labels(*labelvalues, **labelkwargs)


class Tally:
    """Per-request updates of counter and histogram children, counted in plain lists and
    folded into the children before anything reads them.

    prometheus-client takes a lock and makes several Python calls per update (a histogram
    observation walks its buckets), three to four times per request. Here an update is a dict
    look-up and an add; ``fold`` adds the totals to the children. It is registered first in the
    registry, so every collection (``/metrics``, ``get_sample_value``) folds before it reads.
    With ``PROMETHEUS_MULTIPROC_DIR`` (``serve --workers``) the values live in files the
    supervisor reads without asking the workers, so updates go straight to the children."""

    def __init__(self, direct: bool) -> None:
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, tuple[list[float], list[float]]] = {}
        # Folding writes prometheus-client's private histogram fields (proxy.compat): outside
        # the versions that was tested with, every update goes to the children directly.
        if direct or not compat.HISTOGRAM_FOLD:
            self.count = _count_direct  # type: ignore[method-assign]
            self.observe = _observe_direct  # type: ignore[method-assign]

    def count(self, child: Any, amount: float = 1) -> None:
        counts = self._counts
        counts[child] = counts.get(child, 0) + amount

    def observe(self, child: Any, amount: float) -> None:
        got = self._observed.get(child)
        if got is None:
            # The bucket bounds (ending with +Inf), and [sum, then one count per bucket].
            bounds = compat.histogram_bounds(child)
            got = self._observed[child] = (bounds, [0.0] * (len(bounds) + 1))
        bounds, entry = got
        entry[0] += amount
        # The first bucket whose bound is >= amount: where Histogram.observe counts it.
        entry[1 + bisect_left(bounds, amount)] += 1

    def fold(self) -> None:
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, (_, entry) in observed.items():
            compat.histogram_add(child, entry[0], entry[1:])

    # A collector with no families of its own: collecting it folds the pending counts.
    def collect(self) -> Iterator[Any]:
        self.fold()
        return iter(())

    def describe(self) -> Iterator[Any]:
        return iter(())


def _count_direct(child: Any, amount: float = 1) -> None:
    child.inc(amount)


def _observe_direct(child: Any, amount: float) -> None:
    child.observe(amount)


class Children(dict[str, Any]):
    """The children of a one-label collector (``district``) by label value: ``children[name]``.

    ``.labels()`` costs a lock and a dict per call, too much for every request; a hit here is
    one dict look-up in C (no Python frame), a miss asks the collector once. For a label with
    few values, never one of a client's choosing."""

    __slots__ = ("_collector",)

    def __init__(self, collector: Any) -> None:
        super().__init__()
        self._collector = collector

    def __missing__(self, label: str) -> Any:
        child = self[label] = self._collector.labels(label)
        return child


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.tally = Tally(direct=self._multiprocess)
        r.register(self.tally)  # first: collections fold before they read
        self.requests = _RequestCounter(
            "oneroster_proxy_requests_total",
            "Requests answered by the gateway.",
            ["vendor", "district", "resource", "method", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "oneroster_proxy_request_duration_seconds",
            "Time from request received to response finished.",
            ["vendor", "district", "resource"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "oneroster_proxy_upstream_duration_seconds",
            "Time from upstream request sent to the district's response head.",
            ["district"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "oneroster_proxy_upstream_errors_total",
            "Failed upstream exchanges by kind (connect, timeout, reset, token).",
            ["district", "kind"],
            registry=r,
        )
        self.token_fetches = Counter(
            "oneroster_proxy_upstream_token_fetches_total",
            "OAuth2 access tokens fetched from districts' token endpoints.",
            ["district"],
            registry=r,
        )
        self.inflight = Gauge(
            "oneroster_proxy_inflight_requests",
            "Gateway requests in progress.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.response_bytes = Counter(
            "oneroster_proxy_response_bytes_total",
            "Response body bytes streamed from districts to vendors.",
            ["district"],
            registry=r,
        )
        self.tokens_active = Gauge(
            "oneroster_proxy_tokens_active",
            "Unexpired, unrevoked vendor tokens in the store.",
            ["vendor"],
            registry=r,
            multiprocess_mode="max",
        )
        self.config_reloads = Counter(
            "oneroster_proxy_config_reloads_total",
            "Configuration reloads by result (ok, error).",
            ["result"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "oneroster_proxy_circuit_open",
            "1 while a district's circuit breaker is open (failing fast).",
            ["district"],
            registry=r,
            multiprocess_mode="max",
        )

        # docs/metrics.md "SIS courtesy": waits for a busy district's slots (only requests
        # that waited), and whether a district is in one of its pauses (set at scrape time).
        self.district_wait = Histogram(
            "oneroster_proxy_district_wait_seconds",
            "Time a request waited for one of a busy district's slots (requests that waited).",
            ["district"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.district_paused = Gauge(
            "oneroster_proxy_district_paused",
            "1 while a district is in one of its pauses (every request answers 503), else 0.",
            ["district"],
            registry=r,
            multiprocess_mode="max",
        )

        def per_connection(name: str, documentation: str) -> Gauge:
            # One series per appId; under --workers the highest worker's value is the truth.
            return Gauge(
                name, documentation, ["app", "district"], registry=r, multiprocess_mode="max"
            )

        self.connection_expiry = per_connection(
            "oneroster_proxy_connection_expiry_timestamp_seconds",
            "End of a connection's last valid day (its config 'expires', UTC), as a Unix time.",
        )
        # The store connections' series, so the next scrape can drop those that left.
        self._store_expiry: dict[tuple[str, str], float] = {}
        # docs/checklist.md "Background checks"; read from the store at scrape time
        # (proxy.check.background).
        self.check_ok = per_connection(
            "oneroster_proxy_check_ok",
            "1 if the connection's newest background check had no failing item, else 0.",
        )
        self.check_timestamp = per_connection(
            "oneroster_proxy_check_timestamp_seconds",
            "When the connection's newest background check ran, as a Unix time.",
        )
        self.check_failed_twice = per_connection(
            "oneroster_proxy_check_failed_twice",
            "1 if the connection's two newest background checks both failed, else 0.",
        )
        # docs/metrics.md: read from the store at scrape time (proxy.changes.schedule).
        self.changes_held = Gauge(
            "oneroster_proxy_changes_held",
            "1 while a walk of the connection's change feed is held for an operator, else 0.",
            ["app"],
            registry=r,
            multiprocess_mode="max",
        )
        # Not Prometheus: the board's last hour per appId (proxy.activity).
        self.activity = Activity()
        for result in ("ok", "error"):
            self.config_reloads.labels(result)

    def forget(self, metric: Gauge, *labels: str) -> None:
        """Drop one series of ``metric`` (or, without ``labels``, every one). Under ``serve
        --workers`` a worker's values live in prometheus_client's files, which it cannot drop
        series from (it warns at every call, into the operator's log): the supervisor exports
        the per-connection gauges itself (``proxy.serve.workers.control``), so a worker has
        nothing to drop and keeps quiet."""
        if self._multiprocess:
            return
        if not labels:
            metric.clear()
            return
        with contextlib.suppress(KeyError):
            metric.remove(*labels)

    def set_connections(self, config: Config) -> None:
        """Expiry series for ``config``'s connections (at start and after every reload)."""
        self.forget(self.connection_expiry)
        self._store_expiry.clear()
        for app_id, conn in config.connections.items():
            end = conn.ends_at
            if end is not None:
                self.connection_expiry.labels(app_id, conn.district).set(end.timestamp())

    def set_paused(self, paused: dict[str, bool]) -> None:
        """``district_paused`` for every district known (file and store), at scrape time."""
        self.district_paused.clear()
        for district, on in paused.items():
            self.district_paused.labels(district).set(1 if on else 0)

    def set_store_expiry(self, ends: dict[tuple[str, str], float]) -> None:
        """Expiry series for store connections, ``(app, district) -> end`` as read from the
        store at scrape time; a series whose connection left the store (or lost its expiry)
        goes with it."""
        gone = set(self._store_expiry) - set(ends)
        for labels in gone:
            self.forget(self.connection_expiry, *labels)
        for labels, end in ends.items():
            self.connection_expiry.labels(*labels).set(end)
        self._store_expiry = dict(ends)
