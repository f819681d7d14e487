"""proxy.metrics: ``/metrics`` on the admin listener after real traffic (names, labels and
bounded label values exactly as docs/metrics.md lists them), and ``Tally``: counts kept
locally and folded in give exactly the samples that updating the prometheus children one by
one gives, every read of the registry folds first, and in multiprocess mode updates go straight
to the children."""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections import defaultdict
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import DURATION_BUCKETS, Metrics, Tally
from proxy.sandbox import SandboxOptions
from proxy.sandbox.server import start_sandbox
from tests.support import ADMIN_TOKEN, auth, base_config, free_port

P = "oneroster_proxy_"
# name -> label names, exactly (docs/metrics.md); the histograms' own "le" aside.
SPEC_METRICS = {
    "requests_total": {"vendor", "district", "resource", "method", "code"},
    "request_duration_seconds": {"vendor", "district", "resource"},
    "upstream_duration_seconds": {"district"},
    "upstream_errors_total": {"district", "kind"},
    "upstream_token_fetches_total": {"district"},
    "inflight_requests": set(),
    "response_bytes_total": {"district"},
    "tokens_active": {"vendor"},
    "config_reloads_total": {"result"},
}


async def scrape(proxy: Any, http: aiohttp.ClientSession) -> tuple[str, dict[str, list[Any]]]:
    async with http.get(f"{proxy.admin_url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    samples: dict[str, list[Any]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append(sample)
    return text, samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    found = [
        s.value for s in samples[P + name] if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found)


async def test_names_labels_and_bounded_values_after_traffic(proxy, sandbox, http):
    token = await proxy.token()
    other = await proxy.token("other")
    revoked = await proxy.token()
    await proxy.services.store.revoke_token(revoked.split("_")[1], dt.datetime.now(dt.UTC))

    # A first page, to learn real ids, then traffic full of ids and garbage.
    async with http.get(proxy.app_url("v1p1/users?limit=3"), headers=auth(token)) as resp:
        users = (await resp.json())["users"]
    async with http.get(proxy.app_url("v1p1/classes?limit=2"), headers=auth(token)) as resp:
        classes = (await resp.json())["classes"]
    ids = [u["sourcedId"] for u in users] + [c["sourcedId"] for c in classes]
    paths = [f"v1p1/users/{u['sourcedId']}" for u in users]
    paths += [f"v1p1/classes/{c['sourcedId']}/students" for c in classes]
    paths += [
        "v1p1/zzzz/1234567",
        "garbage/9876543",
        "v1p1/users/no-such-user-1234567",
        "rostering/v1p2/orgs",
        "gradebook/v1p2/lineItems?limit=1",
    ]
    for path in paths:
        async with http.get(proxy.app_url(path), headers=auth(token)) as resp:
            await resp.read()
    async with http.get(proxy.app_url("v1p1/users"), headers=auth("orp_garbage")) as resp:
        assert resp.status == 401
    async with http.get(
        proxy.app_url("v1p1/users", app="no-such-app-1234567"), headers=auth(token)
    ) as resp:
        assert resp.status == 404
    # Unknown methods, whether aiohttp's parser knows them (WebDAV's) or not, are outside every
    # scope (403), with one "other" label between them.
    for method in ("PROPFIND", "MKCOL", "LOCK", "FOOBAR"):
        async with http.request(method, proxy.app_url("v1p1/users"), headers=auth(token)) as resp:
            assert resp.status == 403
    async with http.get(proxy.app_url("v1p1/orgs", app="app-8"), headers=auth(other)) as resp:
        assert resp.status == 200

    text, samples = await scrape(proxy, http)

    # Every documented metric is there, with exactly the documented labels.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, labels in SPEC_METRICS.items():
        base = P + name.removesuffix("_total")
        assert base in families, name
        for sample in families[base].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)

    # Bounded label values: collection names or "other", config names or "-", never an id.
    requests = samples[P + "requests_total"]
    resources = {s.labels["resource"] for s in requests}
    assert resources == {"users", "classes", "students", "orgs", "lineItems", "other"}
    assert {s.labels["vendor"] for s in requests} == {"acme", "other", "-"}
    assert {s.labels["district"] for s in requests} == {"springfield", "-"}
    assert {s.labels["method"] for s in requests} == {"GET", "other"}
    assert {s.labels["code"] for s in requests} >= {"200", "401", "403", "404"}
    for sourced_id in ids:
        assert sourced_id not in text
    for hint in ("1234567", "zzzz", "garbage", "FOOBAR", "PROPFIND", "MKCOL", "no-such-app"):
        assert hint not in text

    assert value(samples, "requests_total", vendor="acme", resource="users", code="200") == 4
    assert value(samples, "requests_total", vendor="acme", resource="students", code="200") == 2
    assert value(samples, "requests_total", vendor="-", code="401") == 1
    assert value(samples, "requests_total", method="other", code="403") == 3
    assert value(samples, "upstream_duration_seconds_count", district="springfield") == 11
    assert value(samples, "response_bytes_total", district="springfield") > 1000
    assert value(samples, "inflight_requests") == 0
    # tokens_active: unexpired, unrevoked tokens per vendor, read from the store.
    assert value(samples, "tokens_active", vendor="acme") == 1
    assert value(samples, "tokens_active", vendor="other") == 1
    assert value(samples, "config_reloads_total", result="ok") == 0
    assert value(samples, "config_reloads_total", result="error") == 0

    # The latency buckets suit a proxy: 1 ms to 30 s.
    buckets = sorted(
        {
            float(s.labels["le"])
            for s in samples[P + "request_duration_seconds_bucket"]
            if s.labels["le"] != "+Inf"
        }
    )
    assert buckets == sorted(DURATION_BUCKETS)
    assert buckets[0] == 0.001 and buckets[-1] == 30.0


@pytest.mark.slow  # waits out a real deadline or expiry
async def test_upstream_errors_by_kind_and_token_fetches(sandbox, start_proxy, tmp_path, http):
    oauth2 = await start_sandbox(SandboxOptions(auth="oauth2"))
    try:
        dead = f"http://127.0.0.1:{free_port()}"
        doc = base_config(tmp_path, sandbox, upstream_timeout="1s")
        districts, conns = doc["districts"], doc["connections"]
        districts["dead"] = {"base_url": dead, "auth": "oauth1"}
        districts["deadtoken"] = {
            "base_url": oauth2.base_url,
            "auth": "oauth2",
            "token_url": f"{dead}/oauth2/token",
        }
        districts["campus"] = {
            "base_url": oauth2.base_url,
            "auth": "oauth2",
            "token_url": oauth2.token_url,
        }
        conns["app-dead"] = dict(conns["app-7"], district="dead")
        conns["app-deadtoken"] = dict(conns["app-7"], district="deadtoken")
        conns["app-campus"] = dict(
            conns["app-7"], district="campus", key=oauth2.key, secret=oauth2.secret
        )
        proxy = await start_proxy(sandbox, doc)
        token = await proxy.token()

        async def get(app: str, path: str = "v1p1/orgs") -> int:
            async with http.get(proxy.app_url(path, app=app), headers=auth(token)) as resp:
                try:
                    await resp.read()
                except aiohttp.ClientPayloadError:
                    return -1  # a broken transfer, as it must be
                return resp.status

        assert await get("app-dead") == 502
        assert await get("app-deadtoken") == 502
        for _ in range(3):
            assert await get("app-campus") == 200  # one token fetch serves all three
        sandbox.faults.hang_paths = ["/orgs"]
        assert await get("app-7") == 504
        sandbox.faults.hang_paths = []
        sandbox.faults.reset_mid_body = True
        sandbox.faults.reset_mid_body_count = 1
        # Broken mid-body on a page big enough to stream (> 64 KB): the vendor sees a broken
        # transfer, never a complete 200.
        assert await get("app-7", "v1p1/users?limit=100") == -1

        _, samples = await scrape(proxy, http)
        assert value(samples, "upstream_errors_total", district="dead", kind="connect") == 1
        assert value(samples, "upstream_errors_total", district="deadtoken", kind="token") == 1
        assert value(samples, "upstream_errors_total", district="springfield", kind="timeout") == 1
        assert value(samples, "upstream_errors_total", district="springfield", kind="reset") == 1
        kinds = {s.labels["kind"] for s in samples[P + "upstream_errors_total"]}
        assert kinds <= {"connect", "timeout", "reset", "token"}
        assert value(samples, "upstream_token_fetches_total", district="campus") == 1
        assert value(samples, "requests_total", district="campus", code="200") == 3
    finally:
        await oauth2.close()


async def test_connection_expiry_metric_follows_reloads(sandbox, start_proxy, tmp_path, http):
    doc = base_config(tmp_path, sandbox)
    doc["connections"]["app-7"]["expires"] = dt.date(2031, 6, 30)
    proxy = await start_proxy(sandbox, doc)
    _, samples = await scrape(proxy, http)
    series = samples[P + "connection_expiry_timestamp_seconds"]
    assert [(s.labels, s.value) for s in series] == [
        (
            {"app": "app-7", "district": "springfield"},
            dt.datetime(2031, 7, 1, tzinfo=dt.UTC).timestamp(),
        ),  # through the whole of June 30
    ]

    new = copy.deepcopy(proxy.doc)
    del new["connections"]["app-7"]["expires"]
    new["connections"]["app-8"]["expires"] = dt.date(2030, 1, 31)
    proxy.write(new)
    async with http.post(f"{proxy.admin_url}/admin/reload", headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 200
    _, samples = await scrape(proxy, http)
    series = samples[P + "connection_expiry_timestamp_seconds"]
    assert [s.labels["app"] for s in series] == ["app-8"]
    assert value(samples, "config_reloads_total", result="ok") == 1


async def test_a_reset_small_page_counts_as_an_upstream_error(proxy, sandbox, http):
    token = await proxy.token()
    sandbox.faults.reset_mid_body = True
    sandbox.faults.reset_mid_body_count = 1
    async with http.get(proxy.app_url("v1p1/users?limit=20"), headers=auth(token)) as resp:
        try:
            await resp.read()
            outcome = resp.status
        except aiohttp.ClientPayloadError:
            outcome = -1
    assert outcome in (-1, 502)  # a broken transfer or a 502, never a complete 200
    _, samples = await scrape(proxy, http)
    assert value(samples, "upstream_errors_total", district="springfield", kind="reset") == 1


# -- Tally: local counts folded into the registry -----------------------------------------------


def registry_samples(metrics: Metrics, name: str) -> dict[tuple[str, tuple], float]:
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
        got, want = registry_samples(tallied, name), registry_samples(direct, name)
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
        registry_samples(metrics, "oneroster_proxy_response_bytes_total")[
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
