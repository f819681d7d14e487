"""Every ``oneroster_proxy_*`` Prometheus collector (SPEC.md "Metrics"), on an injected registry.

Label values are bounded: ``resource`` is a collection name from ``proxy.scopes`` or
``other``; ``vendor``/``district`` come from the config, never from the request, and are
``-`` when the request never got that far (unknown token, unknown appId).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
UNKNOWN = "-"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
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
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
