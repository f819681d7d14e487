"""``proxy.metrics.Tally``: counts kept locally and folded in give exactly the samples that
updating the prometheus children one by one gives, and every read of the registry folds
first; in multiprocess mode updates go straight to the children."""

from __future__ import annotations

import random

import pytest

from proxy.metrics import DURATION_BUCKETS, Metrics, Tally


def samples(metrics: Metrics, name: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name.startswith(name) and not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_folded_counts_equal_one_by_one_updates():
    rng = random.Random(7)
    amounts = [rng.choice(DURATION_BUCKETS) for _ in range(50)]  # bounds themselves too
    amounts += [rng.uniform(0, 40) for _ in range(500)] + [0.0, 1e9]
    tallied, direct = Metrics(), Metrics()
    for metrics, update in ((tallied, True), (direct, False)):
        hist = metrics.request_duration.labels("acme", "springfield", "users")
        upstream = metrics.upstream_duration.labels("springfield")
        count = metrics.requests.labels("acme", "springfield", "users", "GET", "200")
        for amount in amounts:
            if update:
                metrics.tally.observe(hist, amount)
                metrics.tally.observe(upstream, amount / 2)
                metrics.tally.count(count)
            else:
                hist.observe(amount)
                upstream.observe(amount / 2)
                count.inc()
    for name in (
        "oneroster_proxy_request_duration_seconds",
        "oneroster_proxy_upstream_duration_seconds",
        "oneroster_proxy_requests_total",
    ):
        got, want = samples(tallied, name), samples(direct, name)
        assert got.keys() == want.keys() and got
        for key, value in want.items():
            assert got[key] == pytest.approx(value), key


def test_every_read_of_the_registry_folds_first():
    metrics = Metrics()
    child = metrics.response_bytes.labels("springfield")
    metrics.tally.count(child, 2381)
    value = metrics.registry.get_sample_value(
        "oneroster_proxy_response_bytes_total", {"district": "springfield"}
    )
    assert value == 2381
    metrics.tally.count(child, 19)
    assert (
        samples(metrics, "oneroster_proxy_response_bytes_total")[
            ("oneroster_proxy_response_bytes_total", (("district", "springfield"),))
        ]
        == 2400
    )


def test_direct_mode_updates_the_children_at_once():
    metrics = Metrics()
    tally = Tally(direct=True)
    child = metrics.response_bytes.labels("springfield")
    tally.count(child, 5)
    hist = metrics.upstream_duration.labels("springfield")
    tally.observe(hist, 0.003)
    assert child._value.get() == 5
    assert hist._sum.get() == pytest.approx(0.003)
